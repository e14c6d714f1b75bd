"""Turn a CSV or JSONL file into train/valid/test.jsonl that mlx-lm reads.

`import_file` does the work for every source, with the column mapping the user chose; `truthfulqa`
fixes the mapping for the TruthfulQA CSV of the classic Phi-3 tutorial; `conversations` maps whole
conversations (OpenAI chat, ShareGPT) into chat records.
Nothing is written when anything is wrong, and existing split files are kept unless `force`.
"""

from phi3tui.core.data.importers.common import (
    FORMATS,
    PREFERENCE,
    PROMPT_ANSWER,
    DataImportError,
    ImportOptions,
    ImportResult,
    existing_splits,
    import_file,
    options_from_values,
    parse_size,
    read_rows,
    split_answers,
    tutorial_text,
)

__all__ = [
    "FORMATS",
    "PREFERENCE",
    "PROMPT_ANSWER",
    "DataImportError",
    "ImportOptions",
    "ImportResult",
    "existing_splits",
    "import_any",
    "import_file",
    "options_from_values",
    "parse_size",
    "read_rows",
    "split_answers",
    "tutorial_text",
]


def import_any(source, out_dir, options: ImportOptions) -> ImportResult:
    """A TruthfulQA CSV maps itself when no column is named, and so does a file of conversations (a "messages"
    or "conversations" column) imported as chat; anything else needs the mapping."""
    from phi3tui.core.data.importers.conversations import conversation_key, import_conversations
    from phi3tui.core.data.importers.truthfulqa import import_truthfulqa, looks_like_truthfulqa

    mapped = options.prompt_column or options.completion_column or options.text_column
    if options.conversation_column:
        return import_conversations(source, out_dir, options)
    if not mapped and options.fmt == "chat":
        columns, rows = read_rows(source)
        rows.close()
        if conversation_key(columns, options):
            return import_conversations(source, out_dir, options)
    if not mapped and looks_like_truthfulqa(source):
        return import_truthfulqa(source, out_dir, options)
    return import_file(source, out_dir, options)
