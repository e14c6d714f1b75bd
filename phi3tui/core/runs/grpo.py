"""GRPO (group relative policy optimisation) on mlx-lm's own trainer, with one copy of the weights.

The runner (trainer.py, through the table of modes in core/train_modes.py) hands a run whose config says
`train_mode: grpo` to a GrpoTask. Its data: {"prompt", "answer"[, "system", "correct_answers"]} records, the
prompt through the model's chat template (core/data's prompt_messages, as the preference pairs render theirs).
Its batches: batch_size prompts. Before each step (`complete`, in the runner process, outside the compiled
step) the task samples group_size completions of each prompt with mlx-lm's sampler (make_sampler) and KV cache
(the group decoded as one batch over the shared prompt), scores them with the reward functions
(core/rewards.py), normalises the rewards within each group into advantages, and computes the reference's
per-token log-probabilities of the completions: the same model with its LoRA/DoRA layers switched off
(preference.adapter_off), or the starting adapter kept aside (preference.adapter_weights) — no second model.

The loss is GRPO's (as mlx-lm-lora 5.10's grpo_loss with its defaults: token-level ratio, the "grpo" loss
type): over the completion tokens only, −min(ratio·A, clip(ratio, 1 ± epsilon)·A) + beta·KL(policy ‖
reference) per token (KL by the k3 estimator exp(r − p) − (r − p) − 1), averaged per completion, then over the
batch. Each group is used for one update, so the old policy's log-probabilities are the policy's own at the
step (stop_gradient): the ratio is 1 in value and carries the policy gradient; `grpo_objective` takes others
for several updates per group.

Sampling is reproducible: the MLX random key of iteration i is derived from the run's seed and i (the global
key, which dropout and a checkpoint's resume use, is put back afterwards), so a resumed run samples what the
uninterrupted one did. Validation samples with one fixed key (the same draws at every validation, so its
curve shows the model, not the dice).

mlx and mlx_lm are imported inside the functions: the module is imported only by the runner process.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

from phi3tui.core.config import grpo_settings
from phi3tui.core.data import DataSettings, prompt_messages, read_split_items
from phi3tui.core.mlx_lm_private import logits_from
from phi3tui.core.rewards import load_rewards
from phi3tui.core.run_folder import GRPO_SAMPLES
from phi3tui.core.runs.preference import PairDataset as PromptDataset  # a dataset of ready items, as the pairs'
from phi3tui.core.runs.preference import adapter_off, adapter_weights, starting_adapter

MAX_KL_LOG_RATIO = 20.0  # exp() of a larger reference − policy gap overflows float32; bounded as mlx-lm-lora does
ADVANTAGE_EPS = 1e-4  # added to a group's reward std (mlx-lm-lora's): a group of equal rewards has 0 advantages
VALIDATION_STREAM = 1 << 40  # keys of validation batches: far from any training iteration's


# -- the loss (pure: per-token log-probabilities in, loss and metrics out) ---------------------------------


def grpo_objective(logps, ref_logps, mask, advantages, beta: float, epsilon: float, old_logps=None):
    """GRPO's loss over a batch of completions: logps, ref_logps and old_logps are per-token log-probabilities
    [R, T] of the completions' tokens under the policy, the reference and the policy that sampled them (None:
    the policy itself, one update per group); mask [R, T] marks the completion tokens; advantages [R].
    Returns (mean loss, metrics: kl, clip_fraction)."""
    import mlx.core as mx

    mask = mask.astype(mx.bool_)
    logps = mx.where(mask, logps.astype(mx.float32), 0)
    ref_logps = mx.where(mask, mx.stop_gradient(ref_logps.astype(mx.float32)), 0)
    old = mx.stop_gradient(logps if old_logps is None else mx.where(mask, old_logps.astype(mx.float32), 0))
    ratio = mx.exp(logps - old)
    advantage = mx.stop_gradient(advantages.astype(mx.float32))[:, None]
    surrogate = mx.minimum(ratio * advantage, mx.clip(ratio, 1 - epsilon, 1 + epsilon) * advantage)
    gap = mx.minimum(ref_logps - logps, MAX_KL_LOG_RATIO)
    kl = mx.maximum(mx.expm1(gap) - gap, 0)  # expm1: exact near 0, where the KL is quadratic
    per_token = -surrogate + beta * kl
    counts = mx.maximum(mask.sum(axis=1), 1)
    loss = (mx.where(mask, per_token, 0).sum(axis=1) / counts).mean()
    clipped = ((ratio < 1 - epsilon) & (advantage < 0)) | ((ratio > 1 + epsilon) & (advantage > 0))
    metrics = {
        "kl": (mx.where(mask, kl, 0).sum(axis=1) / counts).mean(),
        "clip_fraction": (clipped & mask).sum() / mx.maximum(mask.sum(), 1),
    }
    return loss, metrics


def group_advantages(totals: list[float], group_size: int) -> list[float]:
    """Each reward minus its group's mean, over the group's (population) standard deviation plus ADVANTAGE_EPS."""
    import numpy as np

    rewards = np.asarray(totals, dtype=np.float64).reshape(-1, group_size)
    out = (rewards - rewards.mean(axis=1, keepdims=True)) / (rewards.std(axis=1, keepdims=True) + ADVANTAGE_EPS)
    return out.reshape(-1).tolist()


# -- log-probabilities from the model ---------------------------------------------------------------------


def completion_logps(model, tokens, mask):
    """Per-token log-probabilities [R, T] of the completion tokens, float32, 0 outside the mask. tokens [R, L] are
    prompt + completion rows (right-padded); mask [R, T] covers the last T targets (T = L − 1 − start, start at
    most where the shortest prompt's last token is), so the logits of the prompts' heads are never kept."""
    import mlx.core as mx
    import mlx.nn as nn

    start = tokens.shape[1] - 1 - mask.shape[1]
    logits = logits_from(model, tokens[:, :-1], start)
    # cross_entropy works in the logits' dtype (logsumexp − the target's logit): no float32 copy of the logits.
    logps = -nn.losses.cross_entropy(logits, tokens[:, start + 1 :]).astype(mx.float32)
    return mx.where(mask.astype(mx.bool_), logps, 0)


def completion_batch(prompts: list[list[int]], completions: list[list[int]]) -> tuple:
    """(tokens [R, L] int32, mask [R, T] bool) of prompt + completion rows, right-padded (a causal model's
    scores of a row do not depend on the padding after it), L a multiple of 16 plus one, T a multiple of 16 (or
    L − 1)."""
    import mlx.core as mx
    import numpy as np

    longest = max(len(p) + len(c) for p, c in zip(prompts, completions))
    # Padded to 16, not to mlx-lm's 32: every row of the group runs through the body padding included, and its
    # activations are kept for the backward pass (32 pads 16 tokens a row on average, 16 pads 8); a multiple of
    # 16 still keeps the shapes the compiled step is traced for few.
    width = max(2, 1 + 16 * ((longest + 15) // 16))
    # Scored from the shortest prompt's end, the span rounded up to a multiple of 16 targets: few distinct
    # shapes, so the trainer's compiled step is traced again only for a new one, and few prompt logits kept.
    needed = width - min(len(p) for p in prompts)
    start = max(0, width - 1 - 16 * ((needed + 15) // 16))
    tokens = np.zeros((len(prompts), width), np.int32)
    mask = np.zeros((len(prompts), width - 1), bool)
    for r, (p, c) in enumerate(zip(prompts, completions)):
        tokens[r, : len(p) + len(c)] = p + c
        mask[r, len(p) - 1 : len(p) - 1 + len(c)] = True  # target j is token j + 1
    return mx.array(tokens), mx.array(mask[:, start:])


@contextmanager
def sampling_key(seed: int):
    """MLX's global random key set from `seed` for the duration, then put back as it was (dropout's draws and
    the key a checkpoint saves go on as if no sampling had happened)."""
    import mlx.core as mx

    saved = mx.random.state[0]
    mx.random.seed(seed)
    try:
        yield
    finally:
        current = mx.random.state[0]
        current[:] = saved  # the state holds this array; assign into it (as the trainer's restore does)


def sample_group(model, prompt: list[int], group_size: int, max_tokens: int, sampler, eos_ids) -> list[list[int]]:
    """group_size completions of one prompt, decoded together over mlx-lm's KV cache: each up to and with its
    first end token, or max_tokens long."""
    import mlx.core as mx
    import numpy as np
    from mlx_lm.models.cache import KVCache, make_prompt_cache

    cache = make_prompt_cache(model)
    if len(prompt) > 1 and all(type(c) is KVCache for c in cache):
        # The prompt once, its cache then repeated for the group's rows: the shared prefix is computed once.
        model(mx.array([prompt[:-1]]), cache=cache)
        for c in cache:
            keys, values, offset = c.state
            c.state = (mx.repeat(keys, group_size, axis=0), mx.repeat(values, group_size, axis=0), offset)
        logits = model(mx.array([prompt[-1:]] * group_size), cache=cache)[:, -1, :]
    else:
        logits = model(mx.array([prompt] * group_size), cache=cache)[:, -1, :]
    sampled, done = [], np.zeros(group_size, bool)
    eos = np.asarray(sorted(eos_ids))
    for step in range(max_tokens):
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        token = sampler(logprobs)
        mx.eval(token)
        row = np.asarray(token).astype(np.int64).reshape(-1)
        sampled.append(row)
        done |= np.isin(row, eos)
        if done.all() or step == max_tokens - 1:
            break
        logits = model(token.reshape(-1, 1), cache=cache)[:, -1, :]
    columns = np.stack(sampled, axis=1)
    out = []
    for r in range(group_size):
        ids = columns[r].tolist()
        ends = [i for i, t in enumerate(ids) if t in eos_ids]
        out.append(ids[: ends[0] + 1] if ends else ids)
    return out


# -- data -------------------------------------------------------------------------------------------------


def load_prompts(data_dir: Path, tokenizer, settings: DataSettings) -> tuple[PromptDataset, PromptDataset, PromptDataset]:
    """train/valid/test.jsonl of prompt-answer records, the prompt through the chat template (with its
    generation prompt), as (prompt ids, record) items; an absent split is empty. A bad line raises ValueError
    naming the file and line."""
    fields = (settings.prompt_feature, "answer")

    def prompt(record: dict) -> tuple:
        if not all(isinstance(record.get(f), str) and record[f].strip() for f in fields):
            raise ValueError(f"needs non-empty {', '.join(fields)}")
        correct = record.get("correct_answers")
        if correct is not None and not (isinstance(correct, list) and all(isinstance(c, str) for c in correct)):
            raise ValueError("correct_answers must be a list of strings")
        return list(tokenizer.apply_chat_template(prompt_messages(record, settings), add_generation_prompt=True)), record

    return tuple(PromptDataset(items) for items in read_split_items(data_dir, "a prompt-answer record", prompt))


def iterate_prompts(dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None):
    """mlx-lm's iterate_batches for prompts (tasks.shuffled_batches: sorted by length, cut into batches,
    shuffled with NumPy's global generator, so the runner's resume replays it). Yields (items, n): the batch's
    (prompt ids, record) items and its number from 1 (with loop, the training iteration it is for)."""
    from phi3tui.core.runs.tasks import shuffled_batches

    batches = shuffled_batches(dataset, batch_size, lambda i: len(dataset[i][0]), loop, seed, comm_group)
    for number, batch in enumerate(batches, 1):
        yield batch, number


# -- the task the runner drives --------------------------------------------------------------------------


class Rollout:
    """One batch's sampled groups: texts, token ids, rewards by function, totals and advantages (flat, group after group)."""

    def __init__(self, items, completions, texts, rewards: dict, totals, advantages):
        self.items, self.completions, self.texts = items, completions, texts
        self.rewards, self.totals, self.advantages = rewards, totals, advantages


class GrpoTask:
    """Datasets, batches, sampling, loss and measurements of one GRPO run, for mlx-lm's train() (a TrainTask:
    core/runs/tasks.py)."""

    plotted = {"reward_mean": "reward", "kl": "KL"}
    plotted_title = "rewards"
    perplexity = False  # a perplexity of a GRPO loss means nothing

    def __init__(self, args, tokenizer):
        settings = grpo_settings(vars(args))
        self.group_size = settings["group_size"]
        self.max_tokens = settings["max_completion_length"]
        self.temperature = settings["temperature"]
        self.beta, self.epsilon = settings["beta"], settings["epsilon"]
        self.weights = settings["reward_weights"]
        self.seed = int(getattr(args, "seed", 0) or 0)
        if getattr(args, "hf_dataset", None):
            raise ValueError("train_mode grpo reads a local data folder; hf_dataset is not supported for it")
        self.reward_functions = settings["reward_functions"]
        self.rewards = []  # loaded in prepare: a user file that fails to import is not a data error
        self.tokenizer = tokenizer
        data = DataSettings.from_config(vars(args))
        self.prompt_feature = data.prompt_feature
        self.eos_ids = set(tokenizer.eos_token_ids)
        self.datasets = load_prompts(Path(args.data), tokenizer, data)
        # Where samples.jsonl goes: the run folder, adapter_path's parent (runs/<id>/adapters, relative to the
        # workspace the runner works in).
        self.run_dir = Path(args.adapter_path).parent
        self.reference_weights = None
        self.last_batch = None
        self.last_rollout: Rollout | None = None
        self.last_number = 0
        self.window: list[Rollout] = []  # the rollouts since the last train report

    def prepare(self, model, fine_tune_type: str, max_seq_length: int, adapter_file=None) -> None:
        """The reward functions (a user's file imported now, relative to the runner's working folder: the
        workspace) and the reference: the model with its adapter off, or the starting adapter's weights kept aside."""
        self.rewards = load_rewards(self.reward_functions, Path.cwd())
        if fine_tune_type == "full":
            raise ValueError("fine_tune_type full: GRPO's reference is the model with its adapter switched off, "
                             "and a full fine-tune has none (it would need a second copy of the weights); use lora "
                             "or dora")
        self.reference_weights = starting_adapter(model, adapter_file)
        if self.reference_weights is not None:
            print(f"phi3tui runner: the GRPO reference is the starting adapter {adapter_file} (its weights kept "
                  "aside), not the bare base", flush=True)

    iterate_batches = staticmethod(iterate_prompts)

    # -- one batch: sample, score, reference ----------------------------------------------------------
    def rollout(self, model, items, key: int) -> Rollout:
        """Sample group_size completions of each prompt (dropout off, key `key`) and score them."""
        from mlx_lm.sample_utils import make_sampler

        sampler = make_sampler(self.temperature)
        training = model.training
        model.eval()
        completions = []
        try:
            with sampling_key(key):
                for ids, _ in items:
                    completions += sample_group(model, ids, self.group_size, self.max_tokens, sampler, self.eos_ids)
        finally:
            model.train(training)
        texts = [self.tokenizer.decode([t for t in c if t not in self.eos_ids]) for c in completions]
        records = [record for _, record in items for _ in range(self.group_size)]
        prompts = [r[self.prompt_feature] for r in records]
        answers = [r["answer"] for r in records]
        rewards = {reward.name: reward(prompts, texts, answers, records) for reward in self.rewards}
        totals = [sum(w * rewards[r.name][i] for w, r in zip(self.weights, self.rewards)) for i in range(len(texts))]
        return Rollout(items, completions, texts, rewards, totals, group_advantages(totals, self.group_size))

    def arrays(self, model, rollout: Rollout) -> tuple:
        """(tokens, mask, reference log-probabilities, advantages) of a rollout: what the loss reads."""
        import mlx.core as mx

        prompts = [ids for ids, _ in rollout.items for _ in range(self.group_size)]
        tokens, mask = completion_batch(prompts, rollout.completions)
        reference = self.reference(model, tokens, mask)
        advantages = mx.array(rollout.advantages, dtype=mx.float32)
        mx.eval(reference, advantages)
        return tokens, mask, reference, advantages

    def reference(self, model, tokens, mask):
        """The reference's per-token log-probabilities: the policy as the run started, from the same weights."""
        import mlx.core as mx

        training = model.training
        model.eval()
        try:
            if self.reference_weights is not None:
                with adapter_weights(model, self.reference_weights):
                    logps = completion_logps(model, tokens, mask)
            else:
                with adapter_off(model):
                    logps = completion_logps(model, tokens, mask)
        finally:
            model.train(training)
        return mx.stop_gradient(logps)

    def complete(self, model, batch) -> tuple:
        """A batch as the trainer gets it: its groups sampled (the key from the seed and the iteration), scored,
        and the reference scores evaluated now, before the training step."""
        items, number = batch
        rollout = self.rollout(model, items, self.seed * 1_000_003 + number)
        arrays = self.arrays(model, rollout)
        self.last_batch, self.last_rollout, self.last_number = arrays, rollout, number
        self.window.append(rollout)
        return arrays

    # -- loss and measurements ---------------------------------------------------------------------------
    def losses(self, model, tokens, mask, reference, advantages):
        logps = completion_logps(model, tokens, mask)
        loss, metrics = grpo_objective(logps, reference, mask, advantages, self.beta, self.epsilon)
        return loss, mask.sum(), metrics

    def loss(self, model, *batch):
        """mlx-lm's loss signature: (loss, completion tokens)."""
        loss, ntoks, _ = self.losses(model, *batch)
        return loss, ntoks

    def reward_figures(self, rollouts: list[Rollout]) -> dict:
        """reward_mean/std of the weighted totals, reward/<name> and reward_std/<name> of each function, and the
        mean completion length (tokens), over these rollouts' completions."""
        import numpy as np

        totals = np.asarray([t for r in rollouts for t in r.totals], dtype=np.float64)
        out = {"reward_mean": float(totals.mean()), "reward_std": float(totals.std()),
               "completion_length": float(np.mean([len(c) for r in rollouts for c in r.completions]))}
        for reward in self.rewards:
            values = np.asarray([v for r in rollouts for v in r.rewards[reward.name]], dtype=np.float64)
            out[f"reward/{reward.name}"] = float(values.mean())
            out[f"reward_std/{reward.name}"] = float(values.std())
        return out

    def train_metrics(self, model) -> dict:
        """The rewards of the steps since the last report; KL and clip fraction of the last batch (after its
        update, dropout off). Rank 0 appends the last batch's first group to samples.jsonl."""
        import mlx.core as mx

        if not self.window or self.last_batch is None:
            return {}
        out = self.reward_figures(self.window)
        self.window = []
        training = model.training
        model.eval()
        _, _, metrics = self.losses(model, *self.last_batch)
        mx.eval(metrics)
        model.train(training)
        out.update({k: v.item() for k, v in metrics.items()})
        if mx.distributed.init().rank() == 0:
            self.write_sample(self.last_number, self.last_rollout)
        return out

    def write_sample(self, iteration: int, rollout: Rollout) -> None:
        """The first group of a rollout as one line of the run's samples.jsonl (core/run_folder.py GRPO_SAMPLES)."""
        _, record = rollout.items[0]
        group = range(self.group_size)
        line = {"iteration": iteration, "prompt": record[self.prompt_feature], "answer": record["answer"], "completions": [
            {"text": rollout.texts[i], "rewards": {name: values[i] for name, values in rollout.rewards.items()},
             "total": rollout.totals[i], "advantage": rollout.advantages[i]} for i in group]}
        with open(self.run_dir / GRPO_SAMPLES, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")

    def evaluate(self, model, dataset, batch_size, num_batches, max_seq_length) -> tuple[float, dict]:
        """Token-weighted mean loss (as mlx-lm's evaluate), the rewards and KL over up to num_batches batches,
        each sampled with a fixed key (the same draws at every validation)."""
        import mlx.core as mx

        total, ntokens, rollouts, kls, batches = 0.0, 0.0, [], 0.0, 0
        for n, (items, _) in enumerate(iterate_prompts(dataset, batch_size, max_seq_length,
                                                       comm_group=mx.distributed.init())):
            if num_batches != -1 and n >= num_batches:
                break
            rollout = self.rollout(model, items, self.seed * 1_000_003 + VALIDATION_STREAM + n)
            arrays = self.arrays(model, rollout)
            model.eval()
            loss, toks, metrics = self.losses(model, *arrays)
            mx.eval(loss, toks, metrics)
            total += loss.item() * toks.item()
            ntokens += toks.item()
            kls += metrics["kl"].item()
            rollouts.append(rollout)
            batches += 1
        model.train()
        figures = self.reward_figures(rollouts) if rollouts else {}
        figures["kl"] = kls / max(batches, 1)
        return total / max(ntokens, 1), figures
