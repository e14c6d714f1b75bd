"""Evaluate: base vs adapted (or two adapters) scored on the same items from one load of the weights —
test loss and perplexity (mlx-lm's evaluate), TruthfulQA-style MC1/MC2, greedy answers against the
references (exact match, ROUGE-L F1). items and metrics and results are light; the scoring itself is
eval.scoring (imports mlx): import it directly, and only off the UI thread.
This is the package's public face: other packages import from here, not from its modules."""

from phi3tui.core.eval.items import EvalError, McItem, item_from_row, read_mc, split_items
from phi3tui.core.eval.metrics import exact_match, mc1, mc2, rouge_l
from phi3tui.core.eval.probes import CheckpointProbes, read_probe_prompts, read_probes
from phi3tui.core.eval.results import (
    HIGHER_IS_BETTER,
    METRICS,
    SCORE_KEYS,
    SIDE_KEYS,
    best_by,
    checkpoint_scores,
    counts,
    current_scores,
    labels_with_scores,
    number_text,
    output_path,
    rows,
    save,
    score_text,
    summary,
    table,
)

__all__ = [
    "CheckpointProbes",
    "HIGHER_IS_BETTER",
    "SCORE_KEYS",
    "best_by",
    "checkpoint_scores",
    "current_scores",
    "labels_with_scores",
    "number_text",
    "read_probe_prompts",
    "read_probes",
    "score_text",
    "EvalError",
    "METRICS",
    "McItem",
    "SIDE_KEYS",
    "exact_match",
    "item_from_row",
    "counts",
    "mc1",
    "mc2",
    "output_path",
    "read_mc",
    "rouge_l",
    "rows",
    "save",
    "split_items",
    "summary",
    "table",
]
