"""Scoring the two sides on the same items from ONE load of the weights: test loss (mlx-lm's own
evaluate), multiple-choice log-likelihoods (one batch per question: every answer as each side), and
the batch compare's greedy answers against the references.

Heavy (imports mlx): only the model worker thread, the CLI, the demo and tests import it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence

import mlx.core as mx

from phi3tui.core.chat import GenerationSettings, batch_compare
from phi3tui.core.eval.items import EvalError, McItem
from phi3tui.core.eval.metrics import exact_match, mc1, mc2, rouge_l
from phi3tui.core.eval.results import SIDE_KEYS, side_record
from phi3tui.core.workspace import Workspace

Progress = Callable[[str, int, int], None]  # (what, done, total)


# -- multiple choice ---------------------------------------------------------------------
def mc_prompt(tokenizer, question: str) -> str:
    """The question as the user turn of the model's chat template, with the generation prompt."""
    if getattr(tokenizer, "has_chat_template", False):
        messages = [{"role": "user", "content": question}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return question


def encode(tokenizer, text: str) -> list[int]:
    # lm-evaluation-harness encodes a causal model's requests without added special tokens.
    return list(tokenizer.encode(text, add_special_tokens=False))


def continuation(tokenizer, prompt: str, answer: str) -> tuple[list[int], int]:
    """tokenizer(prompt + answer) and where the answer's tokens start: after tokenizer(prompt)'s."""
    whole = encode(tokenizer, prompt + answer)
    start = len(encode(tokenizer, prompt))
    if len(whole) <= start or start == 0:
        raise EvalError(f"the answer {answer!r} adds no tokens after its prompt; give a non-empty answer")
    return whole, start


def loglikelihoods(chat_model, sequences: Sequence[tuple[list[int], int]], row_sides: Sequence[int]) -> list[float]:
    """For each row: the sum of log p(token) over the tokens from its start on, the row run as side
    row_sides[i] of chat_model (one entry: every row as that side), all rows in one forward pass
    (right-padded: a causal model's earlier positions never see the padding)."""
    longest = max(len(tokens) for tokens, _ in sequences)
    inputs = mx.array([tokens[:-1] + [0] * (longest - len(tokens)) for tokens, _ in sequences])
    targets = mx.array([tokens[1:] + [0] * (longest - len(tokens)) for tokens, _ in sequences])
    positions = mx.arange(longest - 1)[None, :]
    starts = mx.array([start - 1 for _, start in sequences])[:, None]
    ends = mx.array([len(tokens) - 1 for tokens, _ in sequences])[:, None]
    chat_model.use_rows(row_sides)
    logits = chat_model.model(inputs).astype(mx.float32)
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    picked = mx.take_along_axis(logprobs, targets[..., None], axis=-1).squeeze(-1)
    mask = (positions >= starts) & (positions < ends)
    sums = mx.sum(mx.where(mask, picked, 0.0), axis=1)
    return sums.tolist()


def score_item(chat_model, item: McItem, n_sides: int) -> list[dict]:
    """Per side: the log-likelihood of every answer (correct ones first) and the item's MC1 and MC2."""
    prompt = mc_prompt(chat_model.tokenizer, item.question)
    answers = list(item.correct) + list(item.incorrect)
    sequences = [continuation(chat_model.tokenizer, prompt, a) for a in answers]
    out = []
    best = item.correct.index(item.best)
    for s in range(n_sides):
        # One batch per side, its scale broadcast over the rows: the base side then skips the LoRA
        # products altogether (a mixed batch would compute them for its base rows and scale them by 0).
        scores = loglikelihoods(chat_model, sequences, [s])
        correct, incorrect = scores[: len(item.correct)], scores[len(item.correct) :]
        out.append({"scores": scores, "mc1": mc1(correct[best], incorrect), "mc2": mc2(correct, incorrect)})
    return out


# -- test loss ---------------------------------------------------------------------------
def test_loss(chat_model, workspace: Workspace, n_sides: int) -> list[float]:
    """Each side's loss on data/test.jsonl, by mlx-lm's evaluate with the workspace config's batch_size,
    test_batches and max_seq_length, the order mlx_lm lora --test uses (numpy seeded with `seed`)."""
    import numpy as np

    from phi3tui.core.mlx_thread import mlx_thread

    with mlx_thread(tuner=True):
        from mlx_lm.tuner.datasets import CacheDataset, load_dataset
        from mlx_lm.tuner.trainer import evaluate

    from phi3tui.core.config import ConfigError, build_args, load_config_values

    try:
        values = load_config_values(workspace.config_path) if workspace.config_path.is_file() else {}
    except ConfigError as exc:
        raise EvalError(str(exc)) from None
    args = build_args({**values, "data": str(workspace.data_dir), "train": False, "test": True})
    test_file = workspace.data_dir / "test.jsonl"
    if not test_file.is_file():
        raise EvalError(f"{test_file} does not exist: import or split data first (Data screen or `phi3tui data import`)")
    try:
        _, _, test_set = load_dataset(args, chat_model.tokenizer)
    except (ValueError, KeyError) as exc:
        raise EvalError(f"{test_file}: mlx-lm cannot read it ({exc}); check it on the Data screen") from None
    batch_size = min(int(args.batch_size), len(test_set))
    losses = []
    for side in range(n_sides):
        chat_model.use_rows([side])  # one row's scale broadcasts over every batch row
        np.random.seed(args.seed)
        losses.append(
            evaluate(
                model=chat_model.model,
                dataset=CacheDataset(test_set),
                batch_size=batch_size,
                num_batches=args.test_batches,
                max_seq_length=args.max_seq_length,
            )
        )
    return losses


def perplexity(loss: float | None) -> float | None:
    if loss is None:
        return None
    return math.exp(loss) if loss < 700 else math.inf


# -- both sides, every measure ----------------------------------------------------------------
def evaluate_sides(
    chat_model,
    workspace: Workspace,
    sides: Sequence,
    mc_items: Sequence[McItem] = (),
    limit: int | None = None,
    answers: bool = True,
    loss: bool = True,
    settings: GenerationSettings | None = None,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> dict:
    """{"left": {...}, "right": {...}} with SIDE_KEYS, plus "items" (per-question scores) and "answers"
    (the compare records). A measure that was not run is None."""
    chat_model.set_sides(sides)
    n = len(sides)
    result = {name: {key: None for key in SIDE_KEYS} for name in ("left", "right")[:n]}
    for name, side in zip(result, sides):
        result[name]["label"] = side.label
        result[name].update(side_record(side))  # so the runs list and promote find the scores by checkpoint
    report = progress or (lambda what, done, total: None)
    if loss:
        report("test loss", 0, 1)
        for name, value in zip(result, test_loss(chat_model, workspace, n)):
            result[name]["test_loss"], result[name]["test_ppl"] = value, perplexity(value)
        report("test loss", 1, 1)
    items = list(mc_items)[:limit] if limit else list(mc_items)
    per_item = []
    for index, item in enumerate(items):
        if cancel is not None and cancel.is_set():
            break
        report("multiple choice", index, len(items))
        per_item.append({"source": item.source, "question": item.question, "sides": score_item(chat_model, item, n)})
    if items:
        report("multiple choice", len(per_item), len(items))
    for s, name in enumerate(result):
        if per_item:
            result[name]["n_mc"] = len(per_item)
            result[name]["mc1"] = sum(r["sides"][s]["mc1"] for r in per_item) / len(per_item)
            result[name]["mc2"] = sum(r["sides"][s]["mc2"] for r in per_item) / len(per_item)
    records: list[dict] = []
    if answers and n == 2 and not (cancel is not None and cancel.is_set()):
        settings = settings or GenerationSettings(max_tokens=128)
        total = [0]

        def on_start(_path, count):
            total[0] = count
            report("answers", 0, count)

        def on_record(record):
            report("answers", record["index"] + 1, total[0])

        _, records = batch_compare(
            chat_model, workspace, list(sides), settings, limit=limit, cancel=cancel, on_start=on_start, on_record=on_record
        )
        scored = [r for r in records if r.get("reference")]
        for name in result:
            if scored:
                result[name]["n_answers"] = len(scored)
                result[name]["exact_match"] = sum(exact_match(r[name]["answer"], r["reference"]) for r in scored) / len(scored)
                result[name]["rouge_l"] = sum(rouge_l(r[name]["answer"], r["reference"]) for r in scored) / len(scored)
    result["items"] = per_item
    result["answers"] = records
    return result


# -- one evaluation as `phi3tui eval` (and the mcp tool) asks for it ----------------------------------------
def evaluate_workspace(
    workspace: Workspace, run: str | None = None, adapter_path=None, checkpoint: str | None = None,
    left_adapter_path=None, left_checkpoint: str | None = None, mc=None, limit: int | None = None,
    max_tokens: int = 128, progress=None, announce=None,
):
    """Score the left side (default: the base model) against the right (a run's, an adapter folder's, else the newest
    run's adapter) and save the result beside the right side. Returns (result, where it was saved).
    announce(text) hears which sides once the model is loaded. Raises ChatError/EvalError with what to do."""
    from pathlib import Path

    from phi3tui.core.chat import BASE, model_path, newest_adapter, side_for_path
    from phi3tui.core.chat.model import ChatModel
    from phi3tui.core.eval.items import read_mc, split_items
    from phi3tui.core.eval.results import output_path, save

    if limit is not None and limit < 1:
        raise EvalError("--limit must be at least 1")
    settings = GenerationSettings(max_tokens=max_tokens)
    settings.check()
    if run:
        run_dir = workspace.runs_dir / run
        if not run_dir.is_dir():
            raise EvalError(f"no run {run!r} in {workspace.runs_dir}: `phi3tui runs list` shows the runs")
        right = side_for_path(run_dir, checkpoint)
    elif adapter_path:
        right = side_for_path(adapter_path, checkpoint)
    elif checkpoint in (None, "latest"):
        right = newest_adapter(workspace.root)
    else:
        right = side_for_path(newest_adapter(workspace.root).adapter_dir, checkpoint)
    left = side_for_path(left_adapter_path, left_checkpoint) if left_adapter_path else BASE
    items = read_mc(Path(mc).expanduser().resolve()) if mc else split_items(workspace.data_dir / "test.jsonl")
    if progress is not None:
        progress("loading the model", 0, 1)
    model = ChatModel(model_path(workspace))
    if progress is not None:
        progress("loading the model", 1, 1)
    if announce is not None:
        announce(f"left: {left.label} · right: {right.label}")
    result = evaluate_sides(model, workspace, [left, right], items, limit, settings=settings, progress=progress)
    out = output_path(right)
    save(result, out)
    return result, out


# -- headless demo step ----------------------------------------------------------------------
def demo_step(workspace: Workspace, state: dict) -> str:
    """The test split's multiple choice and test loss, base vs the run just trained, saved beside it."""
    from pathlib import Path

    from phi3tui.core.chat import BASE, model_path, newest_adapter, side_for_path
    from phi3tui.core.chat.model import ChatModel
    from phi3tui.core.eval.items import split_items
    from phi3tui.core.eval.results import output_path, save

    adapter = side_for_path(Path(state["adapter_dir"])) if state.get("adapter_dir") else newest_adapter(workspace.root)
    items = split_items(workspace.data_dir / "test.jsonl")
    if not items:
        raise EvalError(f"{workspace.data_dir / 'test.jsonl'} has no records with \"incorrect\" answers to score")
    chat_model = ChatModel(model_path(workspace))
    result = evaluate_sides(chat_model, workspace, [BASE, adapter], items, answers=False)
    out = output_path(adapter)
    save(result, out)
    left, right = result["left"], result["right"]
    if state.get("sft_adapter_dir"):
        # `--preference`: the adapter is SFT+DPO; the SFT adapter it started from is scored beside it, on the
        # same loaded model (the base side is not scored twice).
        sft = evaluate_sides(chat_model, workspace, [side_for_path(Path(state["sft_adapter_dir"]))], items,
                             answers=False)["left"]
        columns = [("base", left), ("SFT", sft), ("SFT+DPO", right)]
        return (
            f"{left['n_mc']} test questions: "
            + " | ".join(f"{name} MC1 {r['mc1']:.3f} MC2 {r['mc2']:.3f}" for name, r in columns)
            + "; test loss " + " → ".join(f"{r['test_loss']:.3f}" for _, r in columns) + f"; saved to {out}"
        )
    return (
        f"{left['n_mc']} test questions: base MC1 {left['mc1']:.3f} MC2 {left['mc2']:.3f}, "
        f"adapted MC1 {right['mc1']:.3f} MC2 {right['mc2']:.3f}; test loss {left['test_loss']:.3f} → "
        f"{right['test_loss']:.3f}; saved to {out}"
    )
