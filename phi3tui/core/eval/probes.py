"""Probes: a few prompts the training runner answers greedily right after each checkpoint, with the
weights it already holds, so a run shows how an answer changes as it trains.

Config keys (phi3tui's, never given to mlx-lm): `probe_prompts` — a file of prompts (one a line, or JSONL
in any mlx-lm data format or {"prompt": ...}), relative to the workspace, or a whole number N meaning the
first N prompts of the data folder's test.jsonl — and `probe_max_tokens` (default 64).
Each checkpoint's answers go to RUN_DIR/probes/NNNNNNN.jsonl, written atomically (core/files.py).
Light at import: mlx is imported inside `answer_probes`, which only the runner calls.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from phi3tui.core.chat import END_TOKEN, ChatError, ComparePrompt, read_prompts
from phi3tui.core.config import PROBE_KEYS, probe_problem, probe_prompts_path
from phi3tui.core.eval.items import EvalError
from phi3tui.core.files import atomic_write_text

PROBES_DIR = "probes"


def read_probe_prompts(value, workspace_root: Path, data_dir: Path) -> list[ComparePrompt]:
    """The prompts `probe_prompts` names ([] when it is unset). EvalError names the key, file and line."""
    if value is None:
        return []
    problem = probe_problem(value, None, workspace_root)
    if problem:
        key, what, hint = problem
        raise EvalError(f"{key} {what}: {hint}")
    if isinstance(value, int):
        path, limit = Path(data_dir) / "test.jsonl", value
    else:
        path, limit = probe_prompts_path(value, workspace_root), None
    try:
        return read_prompts(path, limit)
    except ChatError as exc:
        raise EvalError(f"probe_prompts: {exc}") from None


def answer_probes(model, tokenizer, prompts: list[ComparePrompt], max_tokens: int) -> list[dict]:
    """Each prompt answered greedily by `model` as it stands (the chat template, stopping at <|end|>/EOS).

    The model is put in eval mode (no dropout) and back in training mode after, and MLX's random state is
    put back as it was, so a run with probes trains exactly as one without."""
    import mlx.core as mx
    from mlx_lm.generate import stream_generate
    from mlx_lm.sample_utils import make_sampler

    key = mx.array(mx.random.state[0])
    was_training = model.training
    eos = set(tokenizer.eos_token_ids)
    if END_TOKEN in tokenizer.get_vocab():
        eos.add(tokenizer.convert_tokens_to_ids(END_TOKEN))
    greedy = make_sampler(0.0)
    out = []
    model.eval()
    try:
        for item in prompts:
            messages = [{"role": "user", "content": item.prompt}]
            tokens = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
            ids: list[int] = []
            for response in stream_generate(model, tokenizer, tokens, max_tokens=max_tokens, sampler=greedy):
                if response.token in eos:
                    break
                ids.append(response.token)
            out.append({"prompt": item.prompt, "answer": tokenizer.decode(ids).strip(), "tokens": len(ids),
                        "source": item.source})
    finally:
        if was_training:
            model.train()
        mx.random.state[0][:] = key  # the state holds this array; assign into it
        mx.clear_cache()
    return out


def probe_path(run_dir: Path, iteration: int) -> Path:
    return Path(run_dir) / PROBES_DIR / f"{iteration:07d}.jsonl"


def write_probes(run_dir: Path, iteration: int, answers: list[dict]) -> Path:
    path = probe_path(run_dir, iteration)
    path.parent.mkdir(exist_ok=True)
    now = time.time()
    lines = [json.dumps({"iteration": iteration, **a, "time": now}, ensure_ascii=False) + "\n" for a in answers]
    atomic_write_text(path, "".join(lines))
    return path


def read_probes(run_dir: Path) -> dict[int, list[dict]]:
    """{iteration: [{prompt, answer, ...}, ...]} for every probed checkpoint, oldest first."""
    folder = Path(run_dir) / PROBES_DIR
    found: dict[int, list[dict]] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.jsonl")):
        if not path.stem.isdigit():
            continue
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # written atomically; a hand-edited line is skipped rather than fatal
        found[int(path.stem)] = records
    return dict(sorted(found.items()))


class CheckpointProbes:
    """What the runner calls after each checkpoint: answers the prompts and saves them (rank 0 only)."""

    def __init__(self, run_dir: Path, prompts: list[ComparePrompt], max_tokens: int, tokenizer):
        self.run_dir, self.prompts, self.max_tokens, self.tokenizer = Path(run_dir), prompts, max_tokens, tokenizer

    @classmethod
    def from_config(cls, values: dict, run_dir: Path, workspace_root: Path, tokenizer) -> "CheckpointProbes | None":
        """None when the config asks for no probes; EvalError (naming the key) for a bad setting."""
        value, max_tokens = values.get("probe_prompts"), values.get("probe_max_tokens")
        problem = probe_problem(value, max_tokens, workspace_root)
        if problem:
            key, what, hint = problem
            raise EvalError(f"{key} {what}: {hint}")
        prompts = read_probe_prompts(value, workspace_root, probe_prompts_path(str(values.get("data") or "data"), workspace_root))
        if not prompts:
            return None
        return cls(run_dir, prompts, int(max_tokens or PROBE_KEYS["probe_max_tokens"]), tokenizer)

    def __call__(self, model, iteration: int) -> Path | None:
        try:
            answers = answer_probes(model, self.tokenizer, self.prompts, self.max_tokens)
            path = write_probes(self.run_dir, iteration, answers)
        except Exception as exc:  # a probe is a look, not the run: say so in the log and train on
            print(f"phi3tui runner: probes at iteration {iteration} failed ({type(exc).__name__}: {exc}); "
                  "training goes on", flush=True)
            return None
        print(f"phi3tui runner: answered {len(self.prompts)} probe prompt(s) at iteration {iteration}", flush=True)
        return path
