"""A record through the model's eyes: the text mlx-lm feeds, its tokens, and which ones the loss counts.

Tokens come from mlx-lm's own dataset classes (mlx_lm/tuner/datasets.py), so what is shown is what
training uses, mask offset included. mlx_lm is imported lazily, inside the functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path


class TokenizerError(Exception):
    """The model's tokenizer could not be loaded. str() names the model and says what to do."""


def load_tokenizer(model: str | Path):
    """The model's tokenizer, loaded by mlx-lm (mlx_lm.utils.load_tokenizer), exactly as training loads it."""
    if not model:
        raise TokenizerError("no model is set: set `model:` in lora_config.yaml or pass --model")
    try:
        from mlx_lm.utils import load_tokenizer as mlx_load_tokenizer
    except ImportError as exc:  # pragma: no cover - mlx-lm is a dependency
        raise TokenizerError(f"mlx-lm is not installed ({exc})") from None
    try:
        return mlx_load_tokenizer(Path(model))
    except Exception as exc:  # mlx-lm/transformers/hub raise many kinds
        raise TokenizerError(
            f"cannot load the tokenizer of {model}: {type(exc).__name__}: {exc}; "
            "check the model path (or download the model once with network access)"
        ) from None


def dataset_for(record: dict, fmt: str, tokenizer, settings):
    """The mlx-lm dataset object (TextDataset / ChatDataset / CompletionsDataset) for one record."""
    from phi3tui.core.mlx_thread import mlx_thread

    with mlx_thread(tuner=True):
        from mlx_lm.tuner.datasets import ChatDataset, CompletionsDataset, TextDataset

    if fmt == "text":
        if settings.mask_prompt:
            raise ValueError("Prompt masking not supported for text dataset.")
        return TextDataset([record], tokenizer, text_key=settings.text_feature)
    if fmt == "chat":
        return ChatDataset([record], tokenizer, chat_key=settings.chat_feature, mask_prompt=settings.mask_prompt)
    if fmt == "completions":
        return CompletionsDataset(
            [record], tokenizer, settings.prompt_feature, settings.completion_feature, settings.mask_prompt
        )
    raise ValueError(f"unknown format {fmt!r}")


def prompt_messages(record: dict, settings) -> list[dict]:
    """A preference or prompt-answer record's prompt as chat messages, the way mlx-lm-lora's DPO and GRPO
    datasets build them (an optional "system" first)."""
    prompt = [{"role": "system", "content": record["system"]}] if record.get("system") else []
    prompt.append({"role": "user", "content": record[settings.prompt_feature]})
    return prompt


def preference_messages(record: dict, settings) -> tuple[list[dict], list[dict], list[dict]]:
    """(prompt, prompt + chosen, prompt + rejected) as chat messages, the way mlx-lm-lora's DPODataset
    builds them (an optional "system" first)."""
    prompt = prompt_messages(record, settings)
    return (
        prompt,
        prompt + [{"role": "assistant", "content": record[settings.chosen_feature]}],
        prompt + [{"role": "assistant", "content": record[settings.rejected_feature]}],
    )


def preference_tokens(record: dict, tokenizer, settings) -> tuple[list[int], list[int], int]:
    """(chosen ids, rejected ids, prompt length): both answers through the chat template; the loss
    scores only the tokens after the prompt (its generation prompt included)."""
    prompt, chosen, rejected = preference_messages(record, settings)
    template = tokenizer.apply_chat_template
    head = template(prompt, add_generation_prompt=True)
    return list(template(chosen)), list(template(rejected)), len(head)


def prompt_answer_messages(record: dict, settings) -> list[dict]:
    """A prompt-answer (GRPO) record as one conversation: its prompt, then its answer as the assistant's."""
    return prompt_messages(record, settings) + [{"role": "assistant", "content": record[settings.answer_feature]}]


def prompt_answer_tokens(record: dict, tokenizer, settings) -> tuple[list[int], int]:
    """(ids of the prompt and the answer through the chat template, prompt length with its generation prompt).
    GRPO samples its completions after the prompt; the answer stands in for them where lengths are measured."""
    template = tokenizer.apply_chat_template
    head = template(prompt_messages(record, settings), add_generation_prompt=True)
    return list(template(prompt_answer_messages(record, settings))), len(head)


def processor(fmt: str, tokenizer, settings):
    """The `process` training uses for one format: record -> (token ids, mask offset) through mlx-lm's dataset
    classes, or, with `assistant_turns: all` on chat and completions records, (token ids, per-token loss mask)
    from core/data/turns.py (the mask the runner trains with). `loss_flags` reads either."""
    if fmt == "prompt-answer":
        return lambda record: prompt_answer_tokens(record, tokenizer, settings)
    if settings.assistant_turns == "all" and fmt in ("chat", "completions"):
        from phi3tui.core.data.turns import turns_processor

        return turns_processor(fmt, tokenizer, settings)
    if fmt == "text" and settings.mask_prompt:
        # mlx-lm refuses this combination for the whole split (validation reports it); count as without.
        settings = replace(settings, mask_prompt=False)
    return dataset_for({}, fmt, tokenizer, settings).process


def tokens_and_offset(record: dict, fmt: str, tokenizer, settings) -> tuple[list[int], int | list[bool]]:
    """(token ids, mlx-lm's mask offset or, with assistant_turns: all, the per-token loss mask)."""
    tokens, offset = processor(fmt, tokenizer, settings)(record)
    return list(tokens), (list(offset) if isinstance(offset, (list, tuple)) else int(offset))


# What to do about a chat template that leaves tools out: said by the data checks and by Chat's tool definitions.
TEMPLATE_TOOLS_HINT = ("use a model whose template renders tools, or write them where it reads them (Phi-4-mini: "
                       "the definitions as a JSON string in the system message's 'tools', the calls in the "
                       "assistant's content)")


def dropped_tool_parts(messages: list[dict], tools, tokenizer) -> list[str]:
    """What of a tool-calling record the model's chat template leaves out of the text it renders: "tool
    definitions" (`tools` changes nothing), "tool calls" (an assistant's tool_calls change nothing), "tool results"
    (the `tool` messages change nothing). Each found by rendering the record with and without that part; [] when
    the template expresses all the record has."""
    def text(msgs, with_tools=True):
        return tokenizer.apply_chat_template(msgs, tools=tools if with_tools else None, tokenize=False)

    whole = text(messages)
    dropped = []
    if tools and whole == text(messages, with_tools=False):
        dropped.append("tool definitions")
    if any(type(m) is dict and m.get("tool_calls") for m in messages):
        plain = [{k: v for k, v in m.items() if k != "tool_calls"} if type(m) is dict else m for m in messages]
        if whole == text(plain):
            dropped.append("tool calls")
    if any(type(m) is dict and m.get("role") == "tool" for m in messages):
        if whole == text([m for m in messages if not (type(m) is dict and m.get("role") == "tool")]):
            dropped.append("tool results")
    return dropped


def special_token_texts(tokenizer) -> list[str]:
    """The added/special token strings (e.g. <|user|>, <|end|>), longest first."""
    hf = getattr(tokenizer, "_tokenizer", tokenizer)
    texts = set(getattr(hf, "all_special_tokens", []) or [])
    try:
        texts.update(str(t) for t in hf.get_added_vocab())
    except Exception:  # a tokenizer without added tokens
        pass
    return sorted((t for t in texts if t), key=len, reverse=True)


@dataclass
class Token:
    id: int
    piece: str  # the vocabulary entry, e.g. '▁the' or '<|user|>'
    trained: bool  # counts toward the loss
    special: bool


@dataclass
class RenderedRecord:
    text: str  # the string mlx-lm tokenizes (template applied, EOS appended for text as mlx-lm does)
    segments: list[tuple[str, bool]]  # text split into (piece, is_special_token)
    tokens: list[Token]
    offset: int  # tokens before this index are masked (mask_prompt); with assistant_turns: all, the first trained
    truncated_at: int | None  # max_seq_length, when the record is longer
    rejected: "RenderedRecord | None" = None  # a preference pair: this record is the chosen answer
    prompt_masked: bool = False  # the format never trains its prompt (preference, prompt-answer), mask_prompt or not

    @property
    def trained_count(self) -> int:
        return sum(1 for t in self.tokens if t.trained)


def _segments(text: str, specials: list[str]) -> list[tuple[str, bool]]:
    if not specials:
        return [(text, False)]
    pattern = re.compile("|".join(re.escape(s) for s in specials))
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            out.append((text[pos : m.start()], False))
        out.append((m.group(0), True))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out


def render_record(record: dict, fmt: str, tokenizer, settings) -> RenderedRecord:
    """One record as mlx-lm will feed it: text, special tokens, tokens, and the loss mask.
    A preference pair renders its chosen answer, with the rejected one in .rejected."""
    if fmt == "preference":
        _prompt, chosen, rejected = preference_messages(record, settings)
        chosen_ids, rejected_ids, offset = preference_tokens(record, tokenizer, settings)
        template = tokenizer.apply_chat_template
        out = _rendered(chosen_ids, offset, template(chosen, tokenize=False), tokenizer, settings)
        out.rejected = _rendered(rejected_ids, offset, template(rejected, tokenize=False), tokenizer, settings)
        out.prompt_masked = out.rejected.prompt_masked = True
        return out
    if fmt == "prompt-answer":  # the prompt as the model sees it before sampling, then the answer
        ids, offset = prompt_answer_tokens(record, tokenizer, settings)
        text = tokenizer.apply_chat_template(prompt_answer_messages(record, settings), tokenize=False)
        out = _rendered(ids, offset, text, tokenizer, settings)
        out.prompt_masked = True
        return out
    ids, offset = tokens_and_offset(record, fmt, tokenizer, settings)
    if fmt == "text":
        text = record[settings.text_feature]
        encoded = tokenizer.encode(text)
        if len(ids) > len(encoded):  # mlx-lm appended EOS
            text += tokenizer.eos_token or ""
    else:
        if fmt == "chat":
            messages = record[settings.chat_feature]
        else:
            messages = [
                {"role": "user", "content": record[settings.prompt_feature]},
                {"role": "assistant", "content": record[settings.completion_feature]},
            ]
        text = tokenizer.apply_chat_template(messages, tools=record.get("tools"), tokenize=False)
    return _rendered(ids, offset, text, tokenizer, settings)


def _rendered(ids: list[int], offset, text: str, tokenizer, settings) -> RenderedRecord:
    from phi3tui.core.data.turns import loss_flags

    special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    specials = special_token_texts(tokenizer)
    special_set = set(specials)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    limit = settings.max_seq_length
    # The first token is never a target (the loss predicts token i from tokens before it); mlx-lm's mask keeps
    # positions from the offset on, up to the truncated length; assistant_turns: all gives a mask per token.
    trained = loss_flags(len(ids), offset, limit)
    tokens = [
        Token(i, str(p), trained[n], i in special_ids or str(p) in special_set)
        for n, (i, p) in enumerate(zip(ids, pieces))
    ]
    if not isinstance(offset, int):
        offset = next((n for n, t in enumerate(trained) if t), len(ids))
    return RenderedRecord(
        text=text,
        segments=_segments(text, specials),
        tokens=tokens,
        offset=offset,
        truncated_at=limit if len(ids) > limit else None,
    )


TOKEN_TEXT_WINDOW = 16  # tokens decoded before each one: enough context for spaces and split characters


def token_texts(ids: list[int], tokenizer) -> list[str]:
    """Each token's share of the decoded text, so that the pieces joined are the record as the tokenizer decodes
    it: what decoding the token after a few before it adds. Tokens holding part of a character get "" and the
    one that completes it the character; a token whose context does not decode as a prefix (a tokenizer that
    tidies spaces) gets its own decoding."""
    texts: list[str] = []
    settled = 0  # tokens before this one have their text
    for n in range(len(ids)):
        start = max(0, settled - TOKEN_TEXT_WINDOW)
        upto = tokenizer.decode(ids[start : n + 1])
        if upto.endswith("\ufffd") and n + 1 < len(ids):  # an incomplete UTF-8 sequence so far
            texts.append("")
            continue
        before = tokenizer.decode(ids[start:settled])
        texts.append(upto[len(before):] if upto.startswith(before) else tokenizer.decode(ids[settled : n + 1]))
        settled = n + 1
    return texts


def token_rows(rendered: RenderedRecord, tokenizer) -> list[dict]:
    """The token view as data: {"id", "text", "loss"} per token (`phi3tui data tokens`); a preference pair's
    rows carry "answer": "chosen" or "rejected"."""
    parts = [("chosen", rendered), ("rejected", rendered.rejected)] if rendered.rejected else [(None, rendered)]
    rows = []
    for answer, part in parts:
        ids = [t.id for t in part.tokens]
        for token, text in zip(part.tokens, token_texts(ids, tokenizer)):
            row = {"id": token.id, "text": text, "loss": token.trained}
            if answer:
                row["answer"] = answer
            rows.append(row)
    return rows
