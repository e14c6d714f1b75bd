"""The pre-run gate: one check before any run starts, whoever starts it (`phi3tui train`, the Train screen's
New run and Resume, a queued run as the queue starts it, each sweep point, `runs resume` and `--smaller`), and
the same check `phi3tui config check` shows.

What it looks at, reusing each owner's check: the config review's findings (core/config, given by the caller
that made them), every line of every data split mlx-lm reads (core/data's validate_folder, what
`phi3tui data check` runs), the data's format against train_mode and the splits against batch_size
(core/config's check_data), the probe prompts (core/eval's reader), the reporters, the hostfile, the
environment variables a run reads, and the adapter a run resumes from. Nothing here writes into the workspace.

The data check reads every line, so its verdict is kept per data folder, keyed by each split's (path, size,
mtime) and the settings that decide it: in memory, and in a small file in phi3tui's user cache folder
(`data-checks.json`), because every `phi3tui train` and every queue start is a new process, and a cache in
the workspace would be a write into it even when the start is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path

from phi3tui.core.config import Finding
from phi3tui.core.runs.store import RunError

MEMORY_LIMIT_ENV = "PHI3TUI_MEMORY_LIMIT_GB"  # cap MLX's memory for this run (mx.set_memory_limit; enforced too)
DATA_CACHE_FILE = "data-checks.json"
DATA_CACHE_ENTRIES = 32
DATA_ERRORS_KEPT = 20  # data errors listed in a refusal (all are counted; `phi3tui data check` lists them all)


class RunRefused(RunError):
    """A start the gate refused. str(): one line saying so, then one line a problem, each naming its place
    (config file:line and key, split:line, the variable, the hostfile) and what to do."""

    def __init__(self, findings: list[Finding], config_path: Path | str | None = None, what: str = "the run"):
        self.findings = [f for f in findings if f.level == "error"]
        lines = "\n".join(f"  {line}" for line in finding_lines(self.findings, config_path))
        where = f"{config_path}: " if config_path else ""
        super().__init__(f"{where}{what} was not started; fix these first, then start again:\n{lines}")


# -- environment ------------------------------------------------------------------------------------------
def memory_cap_bytes(environ=None) -> int | None:
    """PHI3TUI_MEMORY_LIMIT_GB, when set: the most memory a run's MLX may hold. ValueError names the variable
    and the form it takes."""
    raw = (os.environ if environ is None else environ).get(MEMORY_LIMIT_ENV)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{MEMORY_LIMIT_ENV}={raw!r} is not a number of GB; unset it or give a plain number, "
                         "e.g. 16") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{MEMORY_LIMIT_ENV}={raw!r} must be a number of GB above 0; unset it or give e.g. 16")
    return int(value * 1e9)


def check_environment(environ=None) -> list[Finding]:
    """The environment variables a run reads (a wrong one would fail the run after the model loads)."""
    try:
        memory_cap_bytes(environ)
    except ValueError as exc:
        return [Finding("error", MEMORY_LIMIT_ENV, str(exc).removeprefix(f"{MEMORY_LIMIT_ENV}="))]
    return []


# -- data ---------------------------------------------------------------------------------------------------
_DATA_CACHE: dict[str, list] = {}
_DATA_LOCK = threading.Lock()


def data_folder(values: dict, workspace_root: Path) -> Path | None:
    """The local data folder the config names (None: a Hugging Face dataset, not read here)."""
    if values.get("hf_dataset"):
        return None
    value = str(values.get("data") or "data")
    folder = Path(value).expanduser()
    folder = folder if folder.is_absolute() else Path(workspace_root) / folder
    return folder if folder.is_dir() else None


def _cache_key(folder: Path, settings) -> str:
    from phi3tui.core.data import SPLITS

    stamps = []
    for split in SPLITS:
        path = folder / f"{split}.jsonl"
        try:
            st = path.stat()
            stamps.append([split, st.st_size, st.st_mtime_ns, st.st_ino])
        except OSError:
            stamps.append([split, None])
    return json.dumps([str(folder.resolve()), stamps, dataclasses.astuple(settings)])


def _cache_path() -> Path:
    from phi3tui.core.settings import cache_dir

    return cache_dir() / DATA_CACHE_FILE


def _read_disk_cache() -> dict:
    try:
        data = json.loads(_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_disk_cache(key: str, rows: list) -> None:
    from phi3tui.core.files import atomic_write_text

    data = _read_disk_cache()
    data.pop(key, None)
    data[key] = rows
    while len(data) > DATA_CACHE_ENTRIES:  # oldest first (dicts keep their order in JSON and here)
        data.pop(next(iter(data)))
    try:
        path = _cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data))
    except OSError:  # a cache that cannot be written costs a re-read next time, nothing else
        pass


def data_errors(values: dict, workspace_root: Path) -> list[Finding]:
    """Every line of every split mlx-lm reads (it loads train, valid and test alike), checked as `phi3tui data
    check` checks them (core/data's validate_folder): each error as a Finding whose field is `split:line`."""
    from phi3tui.core.data import DataFolder, DataSettings, validate_folder

    folder = data_folder(values, workspace_root)
    if folder is None:
        return []  # no folder: the config review says so ("data: … does not exist")
    settings = DataSettings.from_config(values)
    key = _cache_key(folder, settings)
    with _DATA_LOCK:
        rows = _DATA_CACHE.get(key)
    if rows is None:
        rows = _read_disk_cache().get(key)
        if not (isinstance(rows, list) and all(isinstance(r, list) and len(r) == 3 for r in rows)):
            try:
                report = validate_folder(DataFolder.open(folder, settings))
            except OSError as exc:
                return [Finding("error", "data", f"{folder} could not be read: {exc}",
                                "check that the folder is still there, then start again")]
            problems = [p for p in report.sorted_problems() if p.level == "error"]
            rows = [[p.location, p.message, p.hint] for p in problems[:DATA_ERRORS_KEPT]]
            if report.errors > len(rows):
                rows.append(["data", f"{report.errors - len(rows)} more error(s) in {folder}",
                             f"run `phi3tui data check {folder}` to list them all"])
            if key == _cache_key(folder, settings):  # unchanged while it was read: the verdict holds
                _write_disk_cache(key, rows)
        with _DATA_LOCK:
            if len(_DATA_CACHE) >= DATA_CACHE_ENTRIES:  # a long-lived app sees many versions of its data
                _DATA_CACHE.clear()
            _DATA_CACHE[key] = rows
    return [Finding("error", where, message, hint) for where, message, hint in rows]


def data_mode_findings(values: dict, workspace_root: Path) -> list[Finding]:
    """The data's format against train_mode, and each split against batch_size (core/config's check_data, on
    the splits' sizes and formats only: no tokenizer)."""
    from phi3tui.core.config import mlx_lm_defaults
    from phi3tui.core.config import DataContext, check_data
    from phi3tui.core.data import DataFolder, DataSettings, split_sizes

    folder = data_folder(values, workspace_root)
    if folder is None:
        return []
    try:
        opened = DataFolder.open(folder, DataSettings.from_config(values))
        ctx = DataContext(folder, split_sizes(folder), {name: info.format for name, info in opened.splits.items()})
    except (OSError, ValueError):
        return []  # data_errors says what cannot be read
    return [f for f in check_data(values, mlx_lm_defaults(), ctx, Path(workspace_root)) if f.level == "error"]


# -- the rest a run reads before it trains -----------------------------------------------------------------
def probe_findings(values: dict, workspace_root: Path) -> list[Finding]:
    """probe_prompts read as the runner reads it (an empty or broken file fails the run after the model loads)."""
    from phi3tui.core.eval import EvalError, read_probe_prompts

    value = values.get("probe_prompts")
    if value is None:
        return []
    folder = data_folder(values, workspace_root) or Path(workspace_root) / "data"
    try:
        read_probe_prompts(value, Path(workspace_root), folder)
    except EvalError as exc:
        return [Finding("error", "probe_prompts", str(exc).removeprefix("probe_prompts").lstrip(": "),
                        "give a file with one prompt a line (or JSONL), or remove probe_prompts")]
    return []


def hostfile_findings(hostfile) -> list[Finding]:
    """The hostfile as mlx.launch reads it (its names are resolved when the run is created)."""
    if not hostfile:
        return []
    from phi3tui.core.runs.hosts import HostsError, read_hostfile

    try:
        read_hostfile(hostfile)
    except HostsError as exc:
        return [Finding("error", "hostfile", str(exc))]
    return []


def resume_findings(values: dict, workspace_root: Path, run_dir: Path | None = None,
                    resume_from: int | None = None) -> list[Finding]:
    """The adapter a run starts from: resume_adapter_file, and a resumed run's checkpoint files."""
    from phi3tui.core.adapters import checkpoint_names
    from phi3tui.core.config import mlx_lm_defaults
    from phi3tui.core.config import check_adapters
    from phi3tui.core.run_folder import ADAPTERS_DIR

    found = [f for f in check_adapters(values, mlx_lm_defaults(), Path(workspace_root)) if f.level == "error"]
    if run_dir is not None and resume_from:
        for name in checkpoint_names(int(resume_from)):
            path = Path(run_dir) / ADAPTERS_DIR / name
            if not path.is_file():
                found.append(Finding("error", "checkpoint", f"{path} is missing: the run cannot resume from "
                                     f"iteration {resume_from}", "start a new run with `phi3tui train`"))
    return found


# -- the gate ----------------------------------------------------------------------------------------------
def check_before_run(workspace_root: Path | str, values: dict, config_findings: list[Finding] | None = None, *,
                     hostfile=None, run_dir: Path | None = None, resume_from: int | None = None,
                     environ=None) -> list[Finding]:
    """What stops a run with these (migrated) config values from starting: the config review's findings
    (`config_findings`, as prepare_run_config / review_config made them; all levels kept, for `config check`),
    then the gate's own errors. A run may start when no finding is an error."""
    from phi3tui.core.config import check_reporters

    root = Path(workspace_root)
    found = list(config_findings or [])
    found += check_environment(environ)
    found += check_reporters(values)
    found += data_errors(values, root)
    found += data_mode_findings(values, root)
    found += probe_findings(values, root)
    found += hostfile_findings(hostfile)
    found += resume_findings(values, root, run_dir, resume_from)
    unique, seen = [], set()
    for f in found:  # the review and the gate share some checks (reporters, data against train_mode)
        key = (f.level, f.field, f.message)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    order = {"error": 0, "warning": 1, "info": 2}
    unique.sort(key=lambda f: order.get(f.level, 3))
    return unique


def require_ready(workspace_root: Path | str, values: dict, config_findings: list[Finding] | None = None, *,
                  config_path: Path | str | None = None, what: str = "the run", **kwargs) -> list[Finding]:
    """check_before_run, raising RunRefused when a finding is an error. Returns the findings otherwise."""
    found = check_before_run(workspace_root, values, config_findings, **kwargs)
    if any(f.level == "error" for f in found):
        raise RunRefused(found, config_path, what)
    return found


def finding_lines(findings: list[Finding], config_path: Path | str | None = None) -> list[str]:
    """Each finding as one line, a config key's with `file:line:` in front (where an editor can jump to)."""
    doc = None
    if config_path is not None:
        try:
            from phi3tui.core.config import ConfigDocument

            doc = ConfigDocument(Path(config_path).read_text(encoding="utf-8"), Path(config_path))
        except Exception:  # an unreadable file: its findings say so; the lines go without numbers
            doc = None
    out = []
    for f in findings:
        line = None
        if doc is not None and f.field and ":" not in f.field and not f.field.isupper():
            try:
                line = doc.line_of(tuple(f.field.split(".")))
            except Exception:
                line = None
        out.append(f"{config_path}:{line}: {f}" if line else str(f))
    return out


def refusal_line(findings: list[Finding], most: int = 3) -> str:
    """The errors among `findings` in one line (a run.json reason, a toast): "" when there is none."""
    errors = [f for f in findings if f.level == "error"]
    line = "; ".join(str(f).removeprefix("error: ") for f in errors[:most])
    if len(errors) > most:
        line += f"; and {len(errors) - most} more (`phi3tui config check` lists them)"
    return line


def first_data_error(values: dict, workspace_root: Path | str) -> Finding | None:
    """The first data error the gate finds: the backstop that names `split:line` when mlx-lm's data loading
    fails with its own words (a JSONDecodeError with no file and the wrong line)."""
    found = data_errors(values, Path(workspace_root)) + data_mode_findings(values, Path(workspace_root))
    return found[0] if found else None
