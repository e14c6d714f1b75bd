"""Which tokens of a conversation the loss counts when every assistant turn is learned (`assistant_turns: all`).

mlx-lm's ChatDataset masks with one offset before the last message (`mask_prompt`), so the earlier answers of a
multi-turn record are never learned from. With `assistant_turns: all` each assistant message's tokens (its
content, its tool calls and the end marker the template puts after it) are in the loss and nothing else is.

The mask is found by rendering the model's own chat template turn by turn and comparing token counts, so it holds
for any template: an assistant turn starts where the conversation before it, with the generation prompt, ends;
it ends where the conversation up to it (rendered as if it were the last message) stops agreeing with the whole.
This module is the one owner of that mask: the runner trains with it (core/runs/tasks.py) and the Data screen
shows and counts it (core/data/render.py, checks.py). It needs only the tokenizer, never mlx.
"""

from __future__ import annotations



def record_messages(record: dict, fmt: str, settings) -> list[dict]:
    """The chat messages mlx-lm renders for a chat or completions record (completions: user + assistant)."""
    if fmt == "chat":
        return record[settings.chat_feature]
    if fmt == "completions":
        return [{"role": "user", "content": record[settings.prompt_feature]},
                {"role": "assistant", "content": record[settings.completion_feature]}]
    raise ValueError(f"assistant_turns: all needs chat or completions records, not {fmt}")


def _render(tokenizer, messages, tools, generation_prompt: bool = False) -> list[int]:
    # The call mlx-lm's ChatDataset makes (return_dict=False: token ids, whatever transformers' default).
    return list(tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=generation_prompt,
                                              return_dict=False))


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def assistant_turn_mask(messages: list[dict], tools, tokenizer) -> tuple[list[int], list[bool]]:
    """(token ids as mlx-lm renders the conversation, per token: is it in the loss). Only assistant messages'
    tokens are True: from the end of the generation prompt before each, to where the template's rendering of the
    conversation up to it stops agreeing with the whole (its end marker included, the next turn's header not)."""
    tokens = _render(tokenizer, messages, tools)
    mask = [False] * len(tokens)
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        start = len(_render(tokenizer, messages[:i], tools, generation_prompt=True)) if i else 0
        end = _common_prefix(_render(tokenizer, messages[: i + 1], tools), tokens)
        for n in range(start, end):
            mask[n] = True
    return tokens, mask


def turns_processor(fmt: str, tokenizer, settings):
    """record -> (token ids, per-token loss mask) for `assistant_turns: all` (chat or completions records)."""
    def process(record: dict) -> tuple[list[int], list[bool]]:
        return assistant_turn_mask(record_messages(record, fmt, settings), record.get("tools"), tokenizer)

    return process


def loss_flags(length: int, offset_or_mask, max_len: int) -> list[bool]:
    """Per token of a record, whether the loss counts it, from what a processor returned: mlx-lm's offset (the
    first token is never a target; tokens from the offset on count) or a per-token mask; none past max_len."""
    if isinstance(offset_or_mask, (list, tuple)):
        return [bool(m) and 0 < n < max_len for n, m in enumerate(offset_or_mask[:length])]
    first = max(int(offset_or_mask), 1)
    return [first <= n < max_len for n in range(length)]
