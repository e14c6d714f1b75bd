"""A workspace's jobs as JSON-ready data: what `phi3tui mcp` (commands/mcp.py) serves to agents as tools.

Each function calls the same core function the CLI command does and returns its result as plain dicts and lists;
a problem the person (or agent) can fix raises ToolRefused with the CLI's own message. Paths an agent gives are
confined to the workspace.
"""

from __future__ import annotations

import math
from pathlib import Path

from phi3tui.core.workspace import Workspace


class ToolRefused(Exception):
    """A job that cannot be done as asked; str() is the CLI's message (what to do)."""


# -- helpers ------------------------------------------------------------------------------------------------------

def plain(value):
    """JSON-ready: paths as text, NaN/inf as None, tuples as lists, dataclass-free."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    return value


def inside_workspace(workspace: Workspace, path: str | Path) -> Path:
    """`path` (relative to the workspace, or absolute) resolved, refused unless it is inside the workspace."""
    root = workspace.root.resolve()
    candidate = Path(path).expanduser()
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if resolved != root and root not in resolved.parents:
        raise ToolRefused(f"{path} is outside the workspace {root}; give a path inside it")
    return resolved


def _run_dir(workspace: Workspace, run: str) -> Path:
    from phi3tui.core.runs import RunError, find_run

    try:
        return find_run(workspace, run)
    except RunError as exc:
        raise ToolRefused(str(exc)) from None


# -- the tools ----------------------------------------------------------------------------------------------------

def workspace_status(workspace: Workspace) -> dict:
    """The workspace, its config and data folder, the status line (`phi3tui runs status --oneline`), its runs."""
    from phi3tui.core.runs import list_runs, status_oneline

    runs = list_runs(workspace)
    return plain({
        "workspace": workspace.root.resolve(),
        "config": workspace.config_path,
        "status": status_oneline(workspace),
        "runs": len(runs),
        "live_runs": [s.id for s in runs if s.live],
    })


def data_check(workspace: Workspace, data: str | None = None) -> dict:
    """`phi3tui data check`: every line of the splits checked (and token statistics with the config's model)."""
    from phi3tui.core.data import check_folder, workspace_data

    wd = workspace_data(workspace)
    data_dir = inside_workspace(workspace, data) if data else wd.data_dir
    if not data_dir.is_dir():
        raise ToolRefused(f"{data_dir} is not a folder; give a data folder with train.jsonl, or a workspace")
    report = check_folder(data_dir, wd.settings, wd.model)
    return plain({
        "data_dir": data_dir,
        "config_note": wd.config_error,
        "records": report.records,
        "errors": report.errors,
        "warnings": report.warnings,
        "problems": [
            {"level": p.level, "location": p.location, "split": p.split, "line": p.line, "rule": p.rule,
             "message": p.message, "hint": p.hint}
            for p in report.sorted_problems()
        ],
        "summary": report.summary(),
        "lines": report.lines(),
    })


def config_check(workspace: Workspace) -> dict:
    """`phi3tui config check lora_config.yaml`: its migrations and the pre-run gate's findings."""
    from phi3tui.core.config import ConfigError, load_config_values, read_config_text, review_config
    from phi3tui.core.runs import check_before_run, finding_lines

    path = workspace.config_path
    root = workspace.root.resolve()
    try:
        load_config_values(path)
        review = review_config(read_config_text(path), root, frozenset())
    except ConfigError as exc:
        raise ToolRefused(str(exc)) from None
    findings = check_before_run(root, review.values, review.findings)
    return plain({
        "config": path,
        "errors": sum(f.level == "error" for f in findings),
        "warnings": sum(f.level == "warning" for f in findings),
        "findings": [{"level": f.level, "field": f.field, "message": f.message, "hint": f.hint} for f in findings],
        "lines": finding_lines(findings, path),
        "migrations": len(review.changes),
    })


def runs_list(workspace: Workspace) -> list[dict]:
    """`phi3tui runs`: every run, newest first."""
    from phi3tui.core.runs import list_runs

    return [plain({
        "id": s.id, "state": s.state, "iteration": s.iteration, "iters": s.iters,
        "best_val_loss": s.best_val_loss, "best_val_iteration": s.best_val_iteration,
        "created": s.created, "reason": s.reason, "live": s.live,
    }) for s in list_runs(workspace)]


def run_status(workspace: Workspace, run: str) -> dict:
    """`phi3tui runs status RUN`: run.json as it truly stands, and the labelled details the CLI prints."""
    from phi3tui.core.runs import run_details, run_info

    info = run_info(_run_dir(workspace, run))
    return plain({"info": info, "details": {label: value for label, value in run_details(info)}})


def run_metrics(workspace: Workspace, run: str, points: int = 200) -> dict:
    """The run's curves (at most about `points` points each), its last train report and its test result."""
    from phi3tui.core.runs import downsample, read_metrics

    metrics = read_metrics(_run_dir(workspace, run))
    train = downsample(metrics.train_x, metrics.train_y, max(2, points))
    val = downsample(metrics.val_x, metrics.val_y, max(2, points))
    return plain({
        "train": {"iteration": train[0], "loss": train[1]},
        "val": {"iteration": val[0], "loss": val[1]},
        "last_train": metrics.last_train,
        "test": metrics.test,
    })


def run_stop(workspace: Workspace, run: str) -> dict:
    """`phi3tui runs stop RUN`: the run saves its adapter at its next step and ends stopped."""
    from phi3tui.core.runs import RunError, stop_run

    run_dir = _run_dir(workspace, run)
    try:
        done = stop_run(run_dir)
    except RunError as exc:
        raise ToolRefused(str(exc)) from None
    return {"id": run_dir.name, "message": done}


def run_resume(workspace: Workspace, run: str, smaller: bool = False) -> dict:
    """`phi3tui runs resume RUN`: start it again from its last checkpoint."""
    from phi3tui.core.runs import RunError, resume_run

    run_dir = _run_dir(workspace, run)
    try:
        iteration = resume_run(run_dir, smaller=smaller)
    except RunError as exc:
        raise ToolRefused(str(exc)) from None
    return {"id": run_dir.name, "iteration": iteration, "message": f"resumed run {run_dir.name} from iteration {iteration}"}


def train_start(workspace: Workspace, iters: int | None = None, queue: bool = False, sweep: str | None = None) -> dict:
    """`phi3tui train [--queue | --sweep SPEC] [--iters N]`: start a detached run now (refused while one is live), or
    queue it, or queue a sweep's grid. Returns the runs made: their ids are the handles to poll."""
    from phi3tui.core.config import ConfigError, SweepError, load_config_values, parse_sweep_spec, sweep_block
    from phi3tui.core.runs import WAITING, RunError, queue_runs, read_run_json, start_alone

    if iters is not None and iters < 1:
        raise ToolRefused("--iters must be at least 1")
    overrides = {"iters": iters} if iters else None
    try:
        grid = parse_sweep_spec(sweep) if sweep else None
        # As `phi3tui train`: a `sweep:` block in the config queues its grid.
        has_block = grid is None and sweep_block(load_config_values(workspace.config_path), str(workspace.config_path))
        if queue or grid or has_block:
            made = queue_runs(workspace, None, overrides, grid)
        else:
            made = [start_alone(workspace, None, overrides)]
    except (ConfigError, RunError, SweepError) as exc:
        raise ToolRefused(str(exc)) from None
    runs = []
    for run_dir in made:
        state = read_run_json(run_dir).get("state")
        runs.append({"id": run_dir.name, "state": state, "queued": state == WAITING, "log": str(run_dir / "log.txt")})
    return {"runs": runs}


def plan_export(workspace: Workspace, step: str, run: str | None = None, checkpoint: int | None = None,
                name: str | None = None, outtype: str = "f16", force: bool = False):
    """`phi3tui export STEP` (or `all`) for a run's adapter (default: the newest run's), checked now (ToolRefused);
    returns the work, `work(progress) -> dict`: the outcome lines as the CLI prints them. Outputs go to
    exports/NAME/ (LM Studio's: its models folder); nothing is replaced without force."""
    from phi3tui.core.export import OUT_TYPES, ExportError, no_progress
    from phi3tui.core.export.job import ExportJob
    from phi3tui.core.export.steps import EXPORT_STEPS, outcome_lines, run_all_steps, run_step

    known = [s.id for s in EXPORT_STEPS]
    if step not in known and step != "all":
        raise ToolRefused(f"no export step {step!r}: the steps are {', '.join(known)}, all")
    if outtype not in OUT_TYPES:
        raise ToolRefused(f"outtype {outtype!r}: choose one of {', '.join(OUT_TYPES)}")
    try:
        # `export fuse` alone gives the fused MLX folder, as on the command line; the others fuse for a GGUF.
        job = ExportJob.create(workspace.root, None, run, checkpoint, None, name, None,
                               need_adapter=step in ("fuse", "lora-gguf", "all"), outtype=outtype, force=force,
                               fuse_for_gguf=step != "fuse")
    except ExportError as exc:
        raise ToolRefused(str(exc)) from None

    def work(progress=None) -> dict:
        done = []
        for step_id in [s.id for s in run_all_steps(job)] if step == "all" else [step]:
            outcome = run_step(job, step_id, progress or no_progress)
            if not outcome.ok:
                raise ToolRefused("; ".join(outcome.lines))
            done.append({"step": step_id, "lines": outcome_lines(outcome), "shortfall": outcome.shortfall})
        return plain({"name": job.name, "out_dir": job.out_dir, "steps": done})

    return work


def export(workspace: Workspace, step: str, run: str | None = None, checkpoint: int | None = None,
           name: str | None = None, outtype: str = "f16", force: bool = False, progress=None) -> dict:
    """`phi3tui export STEP`, to the end (plan_export, then its work)."""
    return plan_export(workspace, step, run, checkpoint, name, outtype, force)(progress)


def plan_eval(workspace: Workspace, run: str | None = None, checkpoint: str | None = None, mc: str | None = None,
              limit: int | None = None, max_tokens: int = 128):
    """`phi3tui eval --json`: base vs a run's adapter (default: the newest run's), test loss, MC1/MC2, answers;
    mc: a multiple-choice file inside the workspace (checked now). Returns the work, `work(progress) -> dict`; the
    full result is saved beside the adapter, as the CLI does."""
    mc_file = inside_workspace(workspace, mc) if mc else None

    def work(progress=None) -> dict:
        from phi3tui.core.chat import ChatError
        from phi3tui.core.eval import EvalError, summary
        from phi3tui.core.eval.scoring import evaluate_workspace

        try:
            # evaluate_workspace reports (what, done, total); tools report (done, total, what) as export steps do.
            report = (lambda what, done, total: progress(done, total, what)) if progress else None
            result, out = evaluate_workspace(workspace, run, None, checkpoint, mc=mc_file, limit=limit,
                                             max_tokens=max_tokens, progress=report)
        except (ChatError, EvalError) as exc:
            raise ToolRefused(str(exc)) from None
        return plain({**summary(result), "saved": out})

    return work


def evaluate(workspace: Workspace, run: str | None = None, checkpoint: str | None = None, mc: str | None = None,
             limit: int | None = None, max_tokens: int = 128, progress=None) -> dict:
    """`phi3tui eval --json`, to the end (plan_eval, then its work)."""
    return plan_eval(workspace, run, checkpoint, mc, limit, max_tokens)(progress)


def config_set(workspace: Workspace, key: str, value) -> dict:
    """Set one key of lora_config.yaml (dotted for nested keys: lora_parameters.rank) in place, keeping its comments
    and layout, as the Config screen does: an edit that does not read back as asked changes nothing."""
    from phi3tui.core.config import ConfigDocument, ConfigError, DocumentEditError
    from phi3tui.core.files import WriteRefused

    path = tuple(part for part in key.split(".") if part)
    if not path:
        raise ToolRefused("give the key to set, e.g. iters or lora_parameters.rank")
    try:
        doc = ConfigDocument.load(workspace.config_path)
        doc.set(path, value)
        doc.save()
    except (ConfigError, DocumentEditError, WriteRefused) as exc:
        raise ToolRefused(f"{workspace.config_path}: {exc}") from None
    now = doc.values
    for part in path:
        now = now.get(part) if isinstance(now, dict) else None
    return plain({"config": workspace.config_path, "key": ".".join(path), "value": now})


def plan_chat_compare(workspace: Workspace, run: str | None = None, checkpoint: str | None = None,
                      prompts: list[str] | None = None, limit: int | None = None, max_tokens: int = 256,
                      tools: str | None = None):
    """`phi3tui chat compare`: the base model and a run's adapter (default: the newest run's) answer the same prompts
    (default: data/test.jsonl's), greedily; tools: a tool definitions file inside the workspace. The sides and
    settings are checked now; returns the work, `work(progress) -> dict`; the records are saved as
    compare-<time>.jsonl in the run folder."""
    from phi3tui.core.chat import BASE, ChatError, ComparePrompt, GenerationSettings, load_tools, newest_adapter
    from phi3tui.core.chat import side_for_path

    try:
        settings = GenerationSettings(max_tokens=max_tokens)
        settings.check()
        if limit is not None and limit < 1:
            raise ChatError("--limit must be at least 1")
        right = side_for_path(_run_dir(workspace, run), checkpoint) if run else newest_adapter(workspace.root)
        chat_tools = load_tools(inside_workspace(workspace, tools)) if tools else None
    except ChatError as exc:
        raise ToolRefused(str(exc)) from None
    items = [ComparePrompt(text, None, f"--prompt {i + 1}") for i, text in enumerate(prompts or [])]

    def work(progress=None) -> dict:
        from phi3tui.core.chat import batch_compare, model_path, tools_note
        from phi3tui.core.chat.model import ChatModel

        count = [0]

        def started(_out, total: int) -> None:
            count[0] = total
            if progress:
                progress(0, total, "compare")

        def answered(record: dict) -> None:
            if progress:
                progress(record["index"] + 1, count[0], "compare")

        try:
            model = ChatModel(model_path(workspace))
            out, records = batch_compare(model, workspace, [BASE, right], settings, None, limit, items=items,
                                         on_start=started, on_record=answered, tools=chat_tools)
        except ChatError as exc:
            raise ToolRefused(str(exc)) from None
        changed = sum(r["left"]["answer"] != r["right"]["answer"] for r in records)
        told = {"tools": list(chat_tools.names), "tools_note": tools_note(model.tokenizer, chat_tools)} \
            if chat_tools else {}
        return plain({
            "left": BASE.label, "right": right.label, "saved": out, "differ": changed, **told,
            "records": [{"prompt": r.get("prompt"), "reference": r.get("reference"), "left": r["left"]["answer"],
                         "right": r["right"]["answer"]} for r in records],
        })

    return work


def chat_compare(workspace: Workspace, run: str | None = None, checkpoint: str | None = None,
                 prompts: list[str] | None = None, limit: int | None = None, max_tokens: int = 256,
                 tools: str | None = None, progress=None) -> dict:
    """`phi3tui chat compare`, to the end (plan_chat_compare, then its work)."""
    return plan_chat_compare(workspace, run, checkpoint, prompts, limit, max_tokens, tools)(progress)


def run_log(workspace: Workspace, run: str, lines: int = 200) -> str:
    """The last lines of a run's log.txt (the runner's and mlx-lm's output)."""
    from phi3tui.core.runs import log_tail

    return "\n".join(log_tail(_run_dir(workspace, run), lines))


# -- long jobs: a handle at once, the result when it is done --------------------------------------------------------

# tool name -> its plan: plan(workspace, **arguments) checks what it can at once (ToolRefused) and returns the work.
LONG_JOBS = {"eval": plan_eval, "export": plan_export, "chat_compare": plan_chat_compare}
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


class Job:
    """One long tool call (eval, export, chat_compare) as job_status reports it: state, progress, then the result
    (the data the blocking call returns) or the error (the CLI's message). Written on the jobs' worker thread,
    read from the server's: every change goes through one condition, and readers get a snapshot."""

    def __init__(self, job_id: str, tool: str, arguments: dict):
        import threading

        self.id, self.tool, self.arguments = job_id, tool, arguments
        self.state = QUEUED
        self.progress: tuple[int, int, str] | None = None  # (done, total, what)
        self.result = None
        self.error: str | None = None
        self.times = {"created": _now(), "started": None, "ended": None}
        self.version = 0  # bumped at every change: a waiter knows whether it has seen the latest
        self._changed = threading.Condition()

    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED)

    def _update(self, **changes) -> None:
        with self._changed:
            for name, value in changes.items():
                setattr(self, name, value)
            self.version += 1
            self._changed.notify_all()

    def report(self, done: int, total: int, what: str) -> None:
        """The progress callback the work gets (export steps' and tools' order: done, total, what)."""
        self._update(progress=(done, total, what))

    def wait_change(self, seen: int, timeout: float | None = None) -> int:
        """Block until the job has changed since version `seen`, or has finished, or `timeout` has passed; returns
        the version now."""
        with self._changed:
            self._changed.wait_for(lambda: self.version != seen or self.finished, timeout)
            return self.version

    def run(self, work) -> None:
        """Run the planned work here (the worker thread); whatever happens, the job ends done or failed."""
        from phi3tui.core.files import disk_error_message

        self._update(state=RUNNING, times={**self.times, "started": _now()})
        try:
            result, error = work(self.report), None
        except ToolRefused as exc:
            result, error = None, str(exc)
        except OSError as exc:
            result, error = None, disk_error_message(exc, exc.filename or "")
        except Exception as exc:  # noqa: BLE001 - a job's failure is its status; the worker goes on with the next
            result, error = None, f"{type(exc).__name__}: {exc}"
        self._update(state=FAILED if error else DONE, result=result, error=error,
                     times={**self.times, "ended": _now()})

    def status(self) -> dict:
        """What job_status gives: the handle, the tool and its arguments, state, progress, result or error, times."""
        with self._changed:
            done_total = self.progress
            return plain({
                "job": self.id, "tool": self.tool, "arguments": self.arguments, "state": self.state,
                "progress": {"done": done_total[0], "total": done_total[1], "message": done_total[2]}
                if done_total else None,
                "result": self.result, "error": self.error, **self.times,
            })


def _now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Jobs:
    """The long jobs of one `phi3tui mcp` server, by handle. They run one after another on one ModelWorker thread
    (core.chat's owner of a process's MLX work, with its own stream), so two evals never hold two models in memory
    at once; a call that waits and a call that takes a handle go through the same queue. Handles live as long as
    the server; what a job saves (eval-*.json, compare-*.jsonl, exports/) stays on disk."""

    def __init__(self, workspace: Workspace):
        import threading

        self.workspace = workspace
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._worker = None

    def start(self, tool: str, **arguments) -> Job:
        """Check the call now (ToolRefused, as the blocking tool would refuse it) and queue its work; the job."""
        import uuid

        from phi3tui.core.chat import ModelWorker

        work = LONG_JOBS[tool](self.workspace, **arguments)
        job = Job(f"{tool}-{uuid.uuid4().hex[:8]}", tool, {k: v for k, v in arguments.items() if v is not None})
        with self._lock:
            self._jobs[job.id] = job
            if self._worker is None:
                self._worker = ModelWorker()
            worker = self._worker
        worker.submit(lambda _worker: job.run(work))
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
            known = list(self._jobs)
        if job is None:
            hint = f"the jobs of this server: {', '.join(known)}" if known else "this server has started no job"
            raise ToolRefused(f"no job {job_id!r} ({hint}); a handle lasts as long as the server that gave it")
        return job

    def close(self, timeout: float = 5.0) -> None:
        """Let the worker thread go (it finishes the running job's current step first, up to `timeout`)."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.close(timeout)
