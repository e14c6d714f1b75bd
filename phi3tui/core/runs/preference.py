"""Preference tuning (DPO, ORPO) on mlx-lm's own trainer, with one copy of the weights.

The runner (trainer.py, through the table of modes in core/train_modes.py) hands a run whose config says
`train_mode: dpo | orpo` to a PreferenceTask: its datasets ({"prompt", "chosen", "rejected"} records through the chat template, as mlx-lm-lora's DPODataset
builds them), its batch iterator and its loss go to `mlx_lm.tuner.trainer.train()` unchanged.

A batch is one array of 2·B rows: the B chosen sequences, then the B rejected ones, with a mask of the
answer tokens (the prompt is never scored). DPO's reference model is the policy at the start of the run,
from the same weights: with no starting adapter, every LoRA/DoRA layer replaced by the base layer it wraps
for one forward pass, whose output is then exactly the base model's (no second model in memory, as
mlx-lm-lora loads); from a starting adapter (resume_adapter_file, e.g. an SFT run's), its LoRA weights kept
aside (a few MB) and swapped in for the reference pass. The reference scores of a batch are computed and
evaluated when the runner hands the batch to the trainer (`complete`), outside the compiled training step,
so their graph is freed before the policy's forward and backward pass. A full fine-tune has no adapter to
switch off: its reference log-probabilities are computed once, before training, from the weights as
loaded, and carried in the batches. ORPO needs no reference.

The losses are mlx-lm-lora's (trainer/dpo_trainer.py dpo_loss, trainer/orpo_trainer.py orpo_loss), with
its names for the settings (beta; dpo_loss_type is its dpo_cpo_loss_type). The trainer compiles the
loss, so the rewards cannot leave it: each train report measures them on the report's last batch (after
its update, dropout off); validation measures them over its batches.

mlx and mlx_lm are imported inside the functions: the module is imported only by the runner process.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from phi3tui.core.config import preference_settings
from phi3tui.core.data import DataSettings, preference_tokens, read_split_items
from phi3tui.core.models import adapter_layer_kinds


# -- the losses (pure: log-probabilities in, loss and metrics out) -------------------------------------


def dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta: float, loss_type: str = "sigmoid"):
    """DPO over a batch of per-sequence scores (summed answer log-probabilities; averaged per token for ipo).
    Returns (mean loss, metrics): the rewards are beta · (policy − reference) of each answer."""
    import mlx.core as mx
    import mlx.nn as nn

    logits = (policy_chosen - policy_rejected) - (reference_chosen - reference_rejected)
    if loss_type == "sigmoid":
        losses = -nn.log_sigmoid(beta * logits)
    elif loss_type == "hinge":
        losses = nn.relu(1 - beta * logits)
    elif loss_type == "ipo":
        losses = (logits - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"dpo_loss_type {loss_type!r}: use sigmoid, hinge or ipo")
    chosen = beta * (policy_chosen - reference_chosen)
    rejected = beta * (policy_rejected - reference_rejected)
    return mx.mean(losses), _reward_metrics(chosen, rejected)


def _log1mexp(log_probability):
    """log(1 − exp(x)) for a log-probability x, stable at both ends (mlx-lm-lora's formula)."""
    import mlx.core as mx

    log_probability = mx.minimum(log_probability, -1e-7)
    return mx.where(
        log_probability > -0.6931471805599453,
        mx.log(-mx.expm1(log_probability)),
        mx.log1p(-mx.exp(log_probability)),
    )


def orpo_loss(chosen_logps, rejected_logps, beta: float):
    """ORPO over per-token average log-probabilities: the chosen answer's NLL minus beta times the
    log-sigmoid of the odds ratio. Returns (mean loss, metrics); the rewards are beta · log-probability."""
    import mlx.core as mx
    import mlx.nn as nn

    chosen_logps = mx.nan_to_num(chosen_logps, nan=0.0, posinf=0.0, neginf=-1000.0)
    rejected_logps = mx.nan_to_num(rejected_logps, nan=0.0, posinf=0.0, neginf=-1000.0)
    log_odds = (chosen_logps - rejected_logps) - (_log1mexp(chosen_logps) - _log1mexp(rejected_logps))
    losses = -chosen_logps - beta * nn.log_sigmoid(log_odds)
    return mx.mean(losses), _reward_metrics(beta * chosen_logps, beta * rejected_logps)


def _reward_metrics(chosen, rejected) -> dict:
    import mlx.core as mx

    return {
        "chosen_reward": mx.mean(chosen),
        "rejected_reward": mx.mean(rejected),
        "reward_margin": mx.mean(chosen - rejected),
        # Per pair (mlx-lm-lora compares the batch means instead, which is the same at batch size 1).
        "accuracy": mx.mean((chosen > rejected).astype(mx.float32)),
    }


# -- log-probabilities from the model -----------------------------------------------------------------


def answer_logps(model, tokens, mask):
    """(summed log-probability of the masked target tokens, their count) per row, summed in float32.

    The per-token log-softmax is taken in the model's dtype, as mlx-lm's own SFT loss takes it: upcasting
    the full-vocabulary logits of every row to float32 first (mlx-lm-lora's way) kept float32 copies of them
    through the backward pass (42 MB of the bench's 267M-model DPO peak at 64 tokens). For a float32 model
    both are the same numbers; for half precision the logits themselves are already rounded to it."""
    import mlx.core as mx
    import mlx.nn as nn

    logits = model(tokens[:, :-1])
    target_mask = mask[:, 1:]
    logps = -nn.losses.cross_entropy(logits, tokens[:, 1:]).astype(mx.float32) * target_mask
    return logps.sum(-1), target_mask.sum(-1)


def has_adapter(model) -> bool:
    kinds = adapter_layer_kinds()
    return any(isinstance(m, kinds) for _, m in model.named_modules())


@contextmanager
def adapter_off(model):
    """The base model for the duration: each adapter layer is replaced in its parent by the layer it wraps
    (mlx-lm's LoRALinear.linear, DoRA's too, an embedding's .embedding), then put back. The base weights
    are the very arrays the adapted model uses: nothing is copied."""
    kinds = adapter_layer_kinds()
    modules = dict(model.named_modules())
    swapped = []
    try:
        for path, module in modules.items():
            if not isinstance(module, kinds):
                continue
            parent_path, _, name = path.rpartition(".")
            parent = modules.get(parent_path, model) if parent_path else model
            base = module.linear if hasattr(module, "linear") else module.embedding
            if isinstance(parent, list):  # an adapter inside a list of layers
                parent[int(name)] = base
            else:
                setattr(parent, name, base)
            swapped.append((parent, name, module))
        yield model
    finally:
        for parent, name, module in reversed(swapped):
            if isinstance(parent, list):
                parent[int(name)] = module
            else:
                setattr(parent, name, module)


@contextmanager
def adapter_weights(model, weights: dict):
    """The model with these adapter weights (flat names, e.g. a starting adapter kept aside) and no dropout
    for the duration, then its own weights and mode back. Arrays are swapped, never copied."""
    from mlx.utils import tree_flatten, tree_unflatten

    current = [(k, v) for k, v in tree_flatten(model.trainable_parameters()) if k in weights]
    training = model.training
    model.update(tree_unflatten(list(weights.items())))
    model.eval()
    try:
        yield model
    finally:
        model.update(tree_unflatten(current))
        model.train(training)


def starting_adapter(model, adapter_file) -> dict | None:
    """The weights of the adapter a run starts from, as the model names them (only its adapter layers:
    small), or None when it starts from the bare base. mlx-lm's arrays are never changed in place, so
    holding them keeps them as they were however the policy trains."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    if not adapter_file:
        return None
    trainable = dict(tree_flatten(model.trainable_parameters()))
    kept = {k: v for k, v in mx.load(str(adapter_file)).items() if k in trainable}
    return kept or None


# -- data -------------------------------------------------------------------------------------------------


class PairDataset:
    """Tokenized pairs: (chosen ids, rejected ids, prompt length[, reference scores]) per record."""

    def __init__(self, items: list):
        self.items = items

    def __getitem__(self, idx: int):
        return self.items[idx]

    def __len__(self) -> int:
        return len(self.items)

    def process(self, item):  # mlx-lm's CacheDataset calls it; the items are ready
        return item


def load_pairs(data_dir: Path, tokenizer, settings: DataSettings) -> tuple[PairDataset, PairDataset, PairDataset]:
    """train/valid/test.jsonl of preference records, tokenized; an absent split is empty. A bad line
    raises ValueError naming the file and line (`phi3tui data check` lists them all)."""
    fields = (settings.prompt_feature, settings.chosen_feature, settings.rejected_feature)

    def pair(record: dict) -> tuple:
        if not all(isinstance(record.get(f), str) and record[f].strip() for f in fields):
            raise ValueError(f"needs non-empty {', '.join(fields)}")
        return preference_tokens(record, tokenizer, settings)  # (chosen, rejected, prompt length)

    return tuple(PairDataset(items) for items in read_split_items(data_dir, "a preference pair", pair))


def iterate_pairs(dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None):
    """mlx-lm's iterate_batches for pairs: sorted by length, cut into batches, shuffled with NumPy's
    global generator (so the runner's resume replays it), each rank taking its share of the rows
    (tasks.shuffled_batches). Yields (tokens [2B, L] int32: chosen rows then rejected rows, answer mask
    [2B, L] float32[, reference scores [2B] float32 when the dataset carries them])."""
    from phi3tui.core.runs.tasks import shuffled_batches

    def length(i):
        return max(len(dataset[i][0]), len(dataset[i][1]))

    for batch in shuffled_batches(dataset, batch_size, length, loop, seed, comm_group):
        yield pair_batch(batch, max_seq_length)


def pair_batch(batch: list, max_seq_length: int) -> tuple:
    """The arrays of a list of pairs (see iterate_pairs), right-padded: a causal model's scores of a row
    do not depend on the padding after it."""
    import mlx.core as mx
    import numpy as np

    seqs = [b[0] for b in batch] + [b[1] for b in batch]
    prompts = [b[2] for b in batch] * 2
    length = min(max(len(s) for s in seqs), max_seq_length)
    tokens = np.zeros((len(seqs), length), np.int32)
    mask = np.zeros((len(seqs), length), np.float32)
    for r, (seq, prompt_len) in enumerate(zip(seqs, prompts)):
        n = min(len(seq), max_seq_length)
        tokens[r, :n] = seq[:n]
        mask[r, min(prompt_len, n) : n] = 1.0
    out = (mx.array(tokens), mx.array(mask))
    if len(batch[0]) > 3:  # precomputed reference scores (full fine-tune)
        out += (mx.array([b[3] for b in batch] + [b[4] for b in batch], dtype=mx.float32),)
    return out


# -- the task the runner drives --------------------------------------------------------------------------


class PreferenceTask:
    """Datasets, batches, loss and measurements of one DPO/ORPO run, for mlx-lm's train() and evaluate()
    (a TrainTask: core/runs/tasks.py)."""

    plotted = {"reward_margin": "margin", "chosen_reward": "chosen", "rejected_reward": "rejected",
               "accuracy": "accuracy"}
    plotted_title = "rewards"
    perplexity = False  # a perplexity of a DPO/ORPO loss means nothing

    def __init__(self, args, tokenizer):
        settings = preference_settings(vars(args))
        self.mode = settings["train_mode"]
        self.beta = settings["beta"]
        self.loss_type = settings["dpo_loss_type"]
        if getattr(args, "hf_dataset", None):
            raise ValueError("train_mode dpo/orpo reads a local data folder; hf_dataset is not supported for it")
        data = DataSettings.from_config(vars(args))
        self.datasets = load_pairs(Path(args.data), tokenizer, data)
        self.last_batch = None
        self.reference_weights = None  # a starting adapter's weights: the reference (see prepare)

    def prepare(self, model, fine_tune_type: str, max_seq_length: int, adapter_file=None) -> None:
        """Once the model is set up as the run starts (adapters added, a starting adapter loaded, before a
        resumed run restores its checkpoint): what the reference is. A full fine-tune's DPO reference
        scores are computed here, once; a LoRA/DoRA run keeps its starting adapter's weights, if any."""
        self.reference_weights = None
        if self.mode != "dpo":
            return
        if fine_tune_type != "full":
            self.reference_weights = starting_adapter(model, adapter_file)
            if self.reference_weights is not None:
                print(f"phi3tui runner: the DPO reference is the starting adapter {adapter_file} (its weights "
                      "kept aside), not the bare base", flush=True)
            return
        import mlx.core as mx

        print("phi3tui runner: fine_tune_type full has no adapter to switch off: computing the reference "
              "log-probabilities once, before training", flush=True)
        model.eval()
        for dataset in self.datasets:
            for n, item in enumerate(dataset.items):
                chosen, rejected, prompt_len = item[:3]
                scores, _ = answer_logps(model, *pair_batch([(chosen, rejected, prompt_len)], max_seq_length))
                mx.eval(scores)
                dataset.items[n] = (chosen, rejected, prompt_len, scores[0].item(), scores[1].item())
        model.train()

    iterate_batches = staticmethod(iterate_pairs)

    def reference(self, model, tokens, mask):
        """The reference scores of a batch: the policy as the run started (see the module's text)."""
        import mlx.core as mx

        if self.reference_weights is not None:
            with adapter_weights(model, self.reference_weights):
                scores, _ = answer_logps(model, tokens, mask)
        else:
            with adapter_off(model):
                scores, _ = answer_logps(model, tokens, mask)
        return mx.stop_gradient(scores)

    def complete(self, model, batch) -> tuple:
        """A batch as the trainer gets it: DPO's reference scores computed and evaluated now, before the
        training step, so the step's graph holds only the policy's pass."""
        import mlx.core as mx

        if self.mode == "dpo" and len(batch) == 2:
            reference = self.reference(model, *batch)
            mx.eval(reference)
            batch = (*batch, reference)
        self.last_batch = batch
        return batch

    def losses(self, model, tokens, mask, reference=None):
        """(loss, answer tokens, metrics) of one batch."""
        import mlx.core as mx

        scores, counts = answer_logps(model, tokens, mask)
        rows = tokens.shape[0] // 2
        ntoks = counts.sum()
        if self.mode == "orpo":
            average = scores / mx.maximum(counts, 1)
            loss, metrics = orpo_loss(average[:rows], average[rows:], self.beta)
            return loss, ntoks, metrics
        if reference is None:
            reference = self.reference(model, tokens, mask)
        if self.loss_type == "ipo":  # IPO compares per-token averages
            scores = scores / mx.maximum(counts, 1)
            reference = reference / mx.maximum(counts, 1)
        loss, metrics = dpo_loss(scores[:rows], scores[rows:], reference[:rows], reference[rows:], self.beta,
                                 self.loss_type)
        return loss, ntoks, metrics

    def loss(self, model, *batch):
        """mlx-lm's loss signature: (loss, tokens)."""
        loss, ntoks, _ = self.losses(model, *batch)
        return loss, ntoks

    def measure(self, model, batch) -> dict:
        """Loss and reward metrics of one batch, without dropout, as floats."""
        import mlx.core as mx

        model.eval()
        loss, _, metrics = self.losses(model, *batch)
        mx.eval(loss, metrics)
        model.train()
        return {k: v.item() for k, v in metrics.items()}

    def train_metrics(self, model) -> dict:
        return self.measure(model, self.last_batch) if self.last_batch is not None else {}

    def evaluate(self, model, dataset, batch_size, num_batches, max_seq_length) -> tuple[float, dict]:
        """Token-weighted mean loss (as mlx-lm's evaluate) and pair-weighted reward metrics."""
        import mlx.core as mx

        model.eval()
        total, ntokens, sums, batches = 0.0, 0.0, {}, 0
        for n, batch in enumerate(iterate_pairs(dataset, batch_size, max_seq_length,
                                                comm_group=mx.distributed.init())):
            if num_batches != -1 and n >= num_batches:
                break
            loss, toks, metrics = self.losses(model, *batch)
            mx.eval(loss, toks, metrics)
            total += loss.item() * toks.item()
            ntokens += toks.item()
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            batches += 1
        model.train()
        world = mx.distributed.init()
        if world.size() > 1:
            summed = mx.distributed.all_sum(mx.array([total, ntokens, batches] + [sums[k] for k in sorted(sums)]),
                                            stream=mx.cpu).tolist()
            total, ntokens, batches = summed[:3]
            sums = dict(zip(sorted(sums), summed[3:]))
        return total / max(ntokens, 1), {k: v / max(batches, 1) for k, v in sums.items()}

