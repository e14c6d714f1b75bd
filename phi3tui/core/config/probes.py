"""The probe settings (phi3tui's config keys, never given to mlx-lm): `probe_prompts` and `probe_max_tokens`,
their defaults, help and shape check. The config owns them (schema and checks read them); core/eval/probes.py
answers the probes with them.
"""

from __future__ import annotations

from pathlib import Path

PROBE_KEYS = {"probe_prompts": None, "probe_max_tokens": 64}
PROBE_HELP = {
    "probe_prompts": "Prompts the run answers greedily after each checkpoint (shown on the Train screen): a file "
                     "of prompts (one a line, or JSONL) or a number N for the first N prompts of test.jsonl; empty for none.",
    "probe_max_tokens": "The longest probe answer, in tokens.",
}


def probe_problem(value, max_tokens, workspace_root: Path) -> tuple[str, str, str] | None:
    """(key, what is wrong, what to do) for a bad probe_prompts / probe_max_tokens, else None.
    Only the value's shape and the file's existence: read_probe_prompts reads the file itself."""
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        return "probe_max_tokens", f"is {max_tokens!r}; it must be a whole number of at least 1", "64 is usual"
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return ("probe_prompts", f"is {value!r}; it must be a file of prompts or a whole number",
                "e.g. probes.txt (one prompt a line) or 3 (the first 3 prompts of test.jsonl)")
    if isinstance(value, int):
        if value < 1:
            return "probe_prompts", f"is {value}; it must be at least 1", "or remove the key for no probes"
        return None
    path = probe_prompts_path(value, workspace_root)
    if not path.is_file():
        return "probe_prompts", f"{path} does not exist", "give a file of prompts (one a line, or JSONL), or a number N"
    return None


def probe_prompts_path(value: str, root: Path) -> Path:
    """The file a probe_prompts value names (relative to the workspace)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(root) / path
