"""Sampling settings and what generation reports, per batch row. Light: no mlx."""

from __future__ import annotations

from dataclasses import dataclass, fields

from phi3tui.core.chat.sides import ChatError

# -- sampling settings --------------------------------------------------------------
@dataclass
class GenerationSettings:
    """What mlx-lm's sampler and logits processors offer, plus the answer length and a system prompt."""

    temp: float = 0.0
    top_p: float = 1.0
    min_p: float = 0.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    repetition_context_size: int = 20
    max_tokens: int = 256
    seed: int = 0
    system_prompt: str = ""

    HELP = {
        "temp": "temperature; 0 picks the likeliest token (greedy)",
        "top_p": "nucleus sampling: keep the likeliest tokens up to this probability mass (1 = off)",
        "min_p": "drop tokens less likely than min_p × the likeliest one (0 = off)",
        "top_k": "keep only the k likeliest tokens (0 = off)",
        "repetition_penalty": "penalise tokens seen in the last repetition_context_size tokens (1 = off)",
        "repetition_context_size": "how many recent tokens the repetition penalty looks at",
        "max_tokens": "the longest answer, in tokens",
        "seed": "random seed for sampling (same seed, same answers)",
        "system_prompt": "a system message put before the conversation (empty = none)",
    }

    def check(self) -> None:
        """Raise ChatError naming the first field out of range."""
        limits = {
            "temp": (0.0, 10.0),
            "top_p": (0.0, 1.0),
            "min_p": (0.0, 1.0),
            "top_k": (0, 1_000_000),
            "repetition_penalty": (0.0, 10.0),
            "repetition_context_size": (1, 100_000),
            "max_tokens": (1, 1_000_000),
            "seed": (0, 2**32 - 1),
        }
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ChatError(f"{name} is {value}; it must be between {low} and {high}")
        if self.repetition_penalty == 0:
            raise ChatError("repetition_penalty must be above 0 (1 = off)")

    @classmethod
    def from_text(cls, values: dict[str, str]) -> "GenerationSettings":
        """Settings from text fields (the settings form, CLI options); ChatError names a bad field."""
        kwargs = {}
        for f in fields(cls):
            if f.name not in values:
                continue
            raw = values[f.name]
            if f.type == "str":
                kwargs[f.name] = raw
                continue
            try:
                kwargs[f.name] = int(raw) if f.type == "int" else float(raw)
            except (TypeError, ValueError):
                kind = "a whole number" if f.type == "int" else "a number"
                raise ChatError(f"{f.name}: {raw!r} is not {kind} ({cls.HELP[f.name]})") from None
        settings = cls(**kwargs)
        settings.check()
        return settings

    def summary(self) -> str:
        parts = ["greedy" if self.temp == 0 else f"temp {self.temp:g}"]
        if self.temp:
            parts += [f"top-p {self.top_p:g}"] if self.top_p < 1 else []
            parts += [f"min-p {self.min_p:g}"] if self.min_p else []
            parts += [f"top-k {self.top_k}"] if self.top_k else []
            parts.append(f"seed {self.seed}")
        if self.repetition_penalty != 1:
            parts.append(f"rep {self.repetition_penalty:g}")
        parts.append(f"max {self.max_tokens}")
        if self.system_prompt:
            parts.append("system prompt")
        return " · ".join(parts)


# -- what generation reports ----------------------------------------------------------
@dataclass
class RowStats:
    prompt_tokens: int = 0
    ttft_s: float | None = None  # time to the first answer token (prompt processing included)
    tokens: int = 0
    decode_s: float = 0.0  # from the first answer token to the last
    finish: str | None = None  # "stop" (<|end|> or end of text), "length" (max_tokens), "stopped" (esc)

    @property
    def tokens_per_second(self) -> float | None:
        if self.tokens < 2 or self.decode_s <= 0:
            return None
        return (self.tokens - 1) / self.decode_s

    def summary(self) -> str:
        """Short enough for a pane's border at 80 columns: prompt→answer tokens, time to first token, speed."""
        parts = [f"{self.prompt_tokens}→{self.tokens} tok"]
        if self.ttft_s is not None:
            parts.append(f"ttft {self.ttft_s * 1000:.0f}ms")
        tps = self.tokens_per_second
        if tps is not None:
            parts.append(f"{tps:.0f} tok/s")
        return " · ".join(parts)

    @property
    def finish_note(self) -> str:
        """What to say under an answer that did not end by itself."""
        return {"length": "(max tokens reached)", "stopped": "(stopped)"}.get(self.finish or "", "")


@dataclass(frozen=True)
class StepEvent:
    row: int
    text: str  # the new text of this row (may be empty while a character is incomplete)
    token: int
    finish: str | None = None
