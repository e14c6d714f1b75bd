"""One loaded model that answers as several models at once: the base weights, once, plus LoRA adapters
switched on per batch row.

mlx-lm's LoRALinear adds ``scale * ((x @ A) @ B)`` to the base layer with one float scale for the
whole batch. Here each adapted layer keeps its base layer and every loaded adapter's (A, B), and each
adapter's scale is a vector over the batch rows (0 where a row does not use it). Row 0 can then be
the base model and row 1 the adapted one in ONE forward pass, and their outputs equal what mlx-lm
gives without and with ``--adapter-path`` (same arithmetic, adding exact zeros elsewhere).

Heavy (imports mlx): only the model worker thread, the CLI and tests import it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_unflatten

from phi3tui.core.adapters import kind_of
from phi3tui.core.chat.cpu_decode import compile_cpu_decode
from phi3tui.core.chat.generation import GenerationSettings, RowStats, StepEvent
from phi3tui.core.chat.sides import END_TOKEN, ChatError, Side

LORA_SUFFIXES = (".lora_a", ".lora_b")


@dataclass(frozen=True)
class LoadedAdapter:
    """One adapter checkpoint's low-rank weights, by the module path they adapt."""

    weights_path: Path
    mtime: float
    scale: float
    layers: dict  # module path -> (lora_a, lora_b)


class RowSwitchedLoRA(nn.Module):
    """A base Linear plus any number of adapters' low-rank updates, each switched on per batch row."""

    def __init__(self, linear: nn.Module):
        super().__init__()
        self.linear = linear
        # slot -> (lora_a, lora_b) and slot -> scale per row, shaped (B, 1, 1) for (B, L, features) inputs
        # and (B, 1) for one-token steps, or no entry when no row uses the slot (then its cost is skipped
        # too). Kept out of the module's parameters.
        object.__setattr__(self, "slot_weights", {})
        object.__setattr__(self, "row_scales", {})

    def __call__(self, x):
        one_token = x.ndim == 3 and x.shape[1] == 1
        if one_token:
            # Decoding (one token per row): work on (rows, features). mlx's matmul flattens a 3-D input to
            # that anyway, so the arithmetic is the same, with 4 fewer reshapes per adapter in the graph.
            rows = x.shape[0]
            x = x.reshape(rows, -1)
        y = self.linear(x)
        for slot, scales in self.row_scales.items():
            weights = self.slot_weights.get(slot)
            if weights is None:
                continue
            lora_a, lora_b = weights
            scale = scales[one_token]
            z = (x @ lora_a) @ lora_b
            z = (scale if scale.dtype == z.dtype else scale.astype(z.dtype)) * z
            # The same arithmetic as mlx-lm's LoRALinear; casts only where dtypes differ (fewer ops per token).
            y = y + (z if z.dtype == x.dtype else z.astype(x.dtype))
        return y.reshape(rows, 1, -1) if one_token else y


def _keep_rows(cache, keep: list[int]) -> None:
    """Drop the batch rows not in `keep` from one layer's cache (BatchKVCache has filter; KVCache does not)."""
    if hasattr(cache, "filter"):
        cache.filter(keep)
        return
    index = mx.array(keep)  # the batch axis comes first; the offset stays as it is
    cache.keys, cache.values = cache.keys[index], cache.values[index]


def _input_output_dims(linear: nn.Module) -> tuple[int, int]:
    out_dims, in_dims = linear.weight.shape
    if isinstance(linear, nn.QuantizedLinear):
        in_dims = in_dims * 32 // linear.bits
    return in_dims, out_dims


def read_adapter(side: Side) -> LoadedAdapter:
    """Read an adapter checkpoint (only its own small weights), checking that it is a LoRA adapter."""
    adapter_dir = side.adapter_dir
    config_path = side.adapter.config_path
    weights_path = side.weights_path
    if not config_path.is_file():
        raise ChatError(f"{adapter_dir} has no {config_path.name}: pick a run's adapters folder or an adapter folder")
    if not weights_path.is_file():
        raise ChatError(f"{weights_path} does not exist: pick another checkpoint")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChatError(f"{config_path}: cannot read it ({exc}); it should be the JSON mlx_lm lora writes") from None
    kind = kind_of(config)
    if kind != "lora":
        raise ChatError(
            f"{config_path}: fine_tune_type is {kind!r}; side-by-side chat works with LoRA adapters only "
            "(fuse this one and open the fused model instead)"
        )
    try:
        scale = float(config["lora_parameters"]["scale"])
    except (KeyError, TypeError, ValueError):
        raise ChatError(f"{config_path}: lora_parameters.scale is missing; it should be written by mlx_lm lora") from None
    try:
        arrays = mx.load(str(weights_path))
    except Exception as exc:  # mlx raises RuntimeError/ValueError for unreadable files
        raise ChatError(f"{weights_path}: cannot read the adapter weights ({exc})") from None
    layers: dict = {}
    for name, array in arrays.items():
        suffix = next((s for s in LORA_SUFFIXES if name.endswith(s)), None)
        if suffix is None:
            raise ChatError(f"{weights_path}: {name} is not a LoRA weight; is this a LoRA adapter?")
        path = name[: -len(suffix)]
        pair = layers.setdefault(path, [None, None])
        pair[LORA_SUFFIXES.index(suffix)] = array
    for path, pair in layers.items():
        if pair[0] is None or pair[1] is None:
            raise ChatError(f"{weights_path}: {path} lacks lora_a or lora_b; the file is incomplete")
    return LoadedAdapter(weights_path, weights_path.stat().st_mtime, scale, {p: tuple(ab) for p, ab in layers.items()})


class ChatModel:
    """The workspace model loaded once; sides (base or an adapter checkpoint) are batch rows."""

    def __init__(self, model_path: str | Path):
        from mlx_lm import load

        self.model_path = str(model_path)
        try:
            self.model, self.tokenizer = load(self.model_path)
        except Exception as exc:  # a missing folder, a repo not downloaded, a broken config
            raise ChatError(f"cannot load the model {self.model_path}: {exc}") from None
        self.model.eval()
        self.compiled_layers = compile_cpu_decode(self.model)  # 0 off the CPU
        # Phi-3 ends a turn with <|end|>; stop there as well as at the end-of-text token(s).
        if END_TOKEN in self.tokenizer.get_vocab():
            self.tokenizer.add_eos_token(END_TOKEN)
        self.sides: tuple[Side, ...] = ()
        self.unknown_token = self.tokenizer.unk_token_id if self.tokenizer.unk_token_id is not None else 0
        self._adapters: dict[Path, LoadedAdapter] = {}  # weights file -> loaded, for the current sides
        self._slots: list[Path] = []  # slot number -> weights file
        self._wrappers: dict[str, RowSwitchedLoRA] = {}

    # -- sides -----------------------------------------------------------------
    def set_sides(self, sides: Sequence[Side]) -> None:
        """Make these sides available as rows. Loads only adapter weights, never the base again.

        Raises ChatError (and changes nothing) when an adapter does not fit this model.
        """
        wanted = []
        for side in sides:
            if side.adapter_dir is not None and side.weights_path not in wanted:
                wanted.append(side.weights_path)
        loaded = {}
        for side in sides:
            if side.adapter_dir is None or side.weights_path in loaded:
                continue
            cached = self._adapters.get(side.weights_path)
            if cached is not None and side.weights_path.is_file() and cached.mtime == side.weights_path.stat().st_mtime:
                loaded[side.weights_path] = cached
            else:
                loaded[side.weights_path] = read_adapter(side)
        modules = dict(self.model.named_modules())
        for adapter in loaded.values():
            self._check_fits(adapter, modules)
        # Everything fits: install. Layers that no adapter touches any more go back to the base layer.
        needed = {path for adapter in loaded.values() for path in adapter.layers}
        unwrap = [(p, w.linear) for p, w in self._wrappers.items() if p not in needed]
        wrap = [(p, RowSwitchedLoRA(modules[p])) for p in sorted(needed) if p not in self._wrappers]
        if unwrap or wrap:
            self.model.update_modules(tree_unflatten(unwrap + wrap))
        for path, _ in unwrap:
            del self._wrappers[path]
        self._wrappers.update(wrap)
        self._slots = wanted
        self._adapters = loaded
        for path, wrapper in self._wrappers.items():
            wrapper.slot_weights.clear()
            for slot, weights_file in enumerate(self._slots):
                pair = loaded[weights_file].layers.get(path)
                if pair is not None:
                    wrapper.slot_weights[slot] = pair
        self.sides = tuple(sides)
        mx.eval([pair for a in loaded.values() for pair in a.layers.values()])

    def _check_fits(self, adapter: LoadedAdapter, modules: dict) -> None:
        where = adapter.weights_path
        for path, (lora_a, lora_b) in adapter.layers.items():
            module = modules.get(path)
            if isinstance(module, RowSwitchedLoRA):
                module = module.linear
            if not isinstance(module, (nn.Linear, nn.QuantizedLinear)):
                raise ChatError(
                    f"{where} was made for another model: it adapts {path}, which {self.model_path} "
                    f"does not have as a linear layer. Pick an adapter trained on {self.model_path}."
                )
            in_dims, out_dims = _input_output_dims(module)
            if lora_a.ndim != 2 or lora_b.ndim != 2 or lora_a.shape[0] != in_dims or lora_b.shape[1] != out_dims:
                raise ChatError(
                    f"{where} was made for another model: {path} is {in_dims}→{out_dims} here but "
                    f"{lora_a.shape[0]}→{lora_b.shape[-1]} in the adapter. Pick an adapter trained on {self.model_path}."
                )

    def use_rows(self, row_sides: Sequence[int]) -> None:
        """Switch each adapter on for the rows whose side uses it, off (scale 0) for the others.

        The next forward pass of self.model has len(row_sides) rows, row i run as side row_sides[i]; with
        one row, its scale broadcasts over a batch of any size (eval scores a whole batch as one side)."""
        scales = {}
        for slot, weights_file in enumerate(self._slots):
            adapter = self._adapters[weights_file]
            per_row = [
                adapter.scale if self.sides[s].adapter_dir is not None and self.sides[s].weights_path == weights_file else 0.0
                for s in row_sides
            ]
            if any(per_row):
                column = mx.array(per_row, dtype=mx.float32).reshape(-1, 1)
                scales[slot] = (column[..., None], column)  # made once per batch, not per layer and token
        mx.eval([s for pair in scales.values() for s in pair])
        for wrapper in self._wrappers.values():
            wrapper.row_scales.clear()
            wrapper.row_scales.update(scales)

    # -- prompts ---------------------------------------------------------------
    def prompt_tokens(self, messages: list[dict], tools=None) -> list[int]:
        """The conversation through the model's chat template, as mlx_lm generate does; `tools` (a ChatTools) given
        to the template in the form it reads (`tools=`, or Phi-4-mini's system message: core.chat.tools.with_tools)."""
        tokenizer = self.tokenizer
        if getattr(tokenizer, "has_chat_template", False):
            from phi3tui.core.chat.tools import with_tools

            messages, definitions = with_tools(tokenizer, messages, tools)
            text = tokenizer.apply_chat_template(messages, tools=definitions, tokenize=False,
                                                 add_generation_prompt=True)
            return list(tokenizer.encode(text, add_special_tokens=False))
        text = "\n".join(m["content"] for m in messages)
        return list(tokenizer.encode(text))

    # -- generation ------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        row_sides: Sequence[int],
        settings: GenerationSettings,
        cancel=None,
        prefill_step_size: int = 2048,
    ) -> Iterator[tuple[list[StepEvent], list[RowStats]]]:
        """Generate for all rows together: one forward pass per token for every row still going.

        Row i answers prompts[i] as side row_sides[i]. Yields, per step, the new text of each row
        (a row's last event has finish set: "stop", "length" or "stopped") and the rows' stats.
        """
        from mlx_lm.models.cache import BatchKVCache, make_prompt_cache
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        model, tokenizer = self.model, self.tokenizer
        eos = set(tokenizer.eos_token_ids)
        rows = len(prompts)
        lengths = [len(p) for p in prompts]
        if min(lengths) == 0:
            raise ChatError("empty prompt")
        padding = [max(lengths) - n for n in lengths]
        stats = [RowStats(prompt_tokens=n) for n in lengths]
        active = list(range(rows))  # batch position -> row
        self.use_rows([row_sides[r] for r in active])
        mx.random.seed(settings.seed)
        sampler = make_sampler(settings.temp, settings.top_p, settings.min_p, top_k=settings.top_k)
        processors = make_logits_processors(
            repetition_penalty=settings.repetition_penalty if settings.repetition_penalty != 1.0 else None,
            repetition_context_size=settings.repetition_context_size,
        )
        history = [list(p) for p in prompts]
        detokenizers = [tokenizer.detokenizer for _ in range(rows)]
        vocab_size = len(detokenizers[0].tokenmap) if hasattr(detokenizers[0], "tokenmap") else len(tokenizer.get_vocab())
        if any(padding):
            cache = [BatchKVCache(padding) for _ in model.layers]
        else:
            # Rows of one length (one row; both panes on one prompt): mlx-lm's own cache, no padding mask
            # to build each step. mlx_lm generate uses the same, so a lone row decodes at its speed.
            cache = make_prompt_cache(model)
        tokens = mx.array([[0] * pad + list(p) for pad, p in zip(padding, prompts)])

        def step(inputs):
            logits = model(inputs[:, None], cache=cache)[:, -1, :]
            if processors:
                rows_logits = []
                for pos, row in enumerate(active):
                    row_logits = logits[pos : pos + 1]
                    context = mx.array(history[row])
                    for processor in processors:
                        row_logits = processor(context, row_logits)
                    rows_logits.append(row_logits)
                logits = mx.concatenate(rows_logits, axis=0)
            logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
            return sampler(logprobs)

        start = time.perf_counter()
        # The prompt but its last token fills the cache; the last token gives the first answer token.
        rest = tokens[:, :-1]
        while rest.shape[1] > 0:
            model(rest[:, :prefill_step_size], cache=cache)
            mx.eval([c.state for c in cache])
            rest = rest[:, prefill_step_size:]
        y = step(tokens[:, -1])
        mx.async_eval(y)
        first_token_at = None
        while True:
            stopping = cancel is not None and cancel.is_set()
            next_y = None
            if not stopping:
                next_y = step(y)
                mx.async_eval(next_y)
            chosen = y.tolist()
            now = time.perf_counter()
            if first_token_at is None:
                first_token_at = now
                for s in stats:
                    s.ttft_s = now - start
            events = []
            for pos, row in enumerate(active):
                token, s, detok = chosen[pos], stats[row], detokenizers[row]
                s.decode_s = now - first_token_at
                if token in eos:
                    s.finish = "stop"
                else:
                    if token < vocab_size:
                        detok.add_token(token)
                    else:  # a model with more embeddings than its tokenizer has tokens (random ones do)
                        detok.add_token(self.unknown_token)
                    history[row].append(token)
                    s.tokens += 1
                    if s.tokens >= settings.max_tokens:
                        s.finish = "length"
                    elif stopping:
                        s.finish = "stopped"
                if s.finish:
                    detok.finalize()
                events.append(StepEvent(row, detok.last_segment, token, s.finish))
            yield events, stats
            keep = [pos for pos, row in enumerate(active) if stats[row].finish is None]
            if not keep:
                return
            if len(keep) < len(active):
                # A finished row leaves the batch: the others go on without paying for it.
                for c in cache:
                    _keep_rows(c, keep)
                next_y = next_y[mx.array(keep)]
                active = [active[pos] for pos in keep]
                self.use_rows([row_sides[r] for r in active])
            y = next_y

    def answer_all(self, prompts, row_sides, settings, cancel=None) -> tuple[list[str], list[RowStats]]:
        """The whole answers (text per row) and their stats, without streaming."""
        texts = ["" for _ in prompts]
        stats: list[RowStats] = []
        for events, stats in self.generate(prompts, row_sides, settings, cancel):
            for event in events:
                texts[event.row] += event.text
        return texts, stats
