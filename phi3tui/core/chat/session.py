"""Chat: the base and the adapted model (or two adapters) answering side by side from one model.

This module is light (no mlx at import): the sides, the settings, the conversations, the prompts
of a batch compare, the one model worker thread of the app, and the headless demo step. The model
itself (mlx) lives in core/chat/model.py and is only ever touched from the worker thread, the CLI or tests.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from phi3tui.core import models
from phi3tui.core.files import atomic_write_text
from phi3tui.core.mlx_thread import MODEL_THREAD_NAME
from phi3tui.core.workspace import Workspace

from phi3tui.core.chat.generation import GenerationSettings, StepEvent
from phi3tui.core.chat.tools import ChatTools, load_tools, tools_note
from phi3tui.core.chat.sides import BASE, END_TOKEN, USER_TAG, ASSISTANT_TAG, ChatError, Side, newest_adapter, side_for_path


# -- conversations ----------------------------------------------------------------------
@dataclass
class Conversation:
    """One pane's turns: each pane keeps its own answers, so its next prompt includes them."""

    turns: list[dict] = field(default_factory=list)  # {"role": "user"|"assistant", "content": str}

    def messages(self, user_text: str, system_prompt: str = "") -> list[dict]:
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return system + self.turns + [{"role": "user", "content": user_text}]

    def add(self, user_text: str, answer: str) -> None:
        self.turns += [{"role": "user", "content": user_text}, {"role": "assistant", "content": answer}]

    def last_answer(self) -> str:
        return next((t["content"] for t in reversed(self.turns) if t["role"] == "assistant"), "")


# -- batch compare prompts ----------------------------------------------------------------
@dataclass(frozen=True)
class ComparePrompt:
    prompt: str
    reference: str | None = None
    source: str = ""  # file:line


def split_text_record(text: str) -> tuple[str, str | None] | None:
    """The user part and the answer of a record in the tutorial's text format."""
    if USER_TAG not in text:
        return None
    after_user = text.split(USER_TAG, 1)[1]
    user, _, rest = after_user.partition(ASSISTANT_TAG)
    user = user.replace(END_TOKEN, "").strip()
    answer = rest.replace(END_TOKEN, "").strip() or None
    return (user, answer) if user else None


def prompt_from_record(record) -> tuple[str, str | None] | None:
    """(prompt, reference answer) from a record of any mlx-lm data format, or a plain prompt record."""
    if isinstance(record, str):
        return (record.strip(), None) if record.strip() else None
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("messages"), list):
        msgs = [m for m in record["messages"] if isinstance(m, dict)]
        users = [i for i, m in enumerate(msgs) if m.get("role") == "user"]
        if not users:
            return None
        last = users[-1]
        reply = next((m.get("content") for m in msgs[last + 1 :] if m.get("role") == "assistant"), None)
        return str(msgs[last].get("content", "")).strip(), reply
    if isinstance(record.get("prompt"), str):
        return record["prompt"].strip(), record.get("completion") or record.get("reference")
    if isinstance(record.get("text"), str):
        return split_text_record(record["text"])
    return None


def read_prompts(path: Path, limit: int | None = None) -> list[ComparePrompt]:
    """Prompts from a .jsonl file (any mlx-lm data format, or {"prompt": ...}) or a text file (one per line)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ChatError(f"{path} does not exist: give a .jsonl data file or a text file with one prompt a line") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChatError(f"{path}: cannot read it ({exc})") from None
    as_json = path.suffix in (".jsonl", ".json")
    prompts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if as_json:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ChatError(f"{path}:{number}: not valid JSON ({exc.msg}); fix or remove the line") from None
        else:
            record = line
        parsed = prompt_from_record(record)
        if parsed is None or not parsed[0]:
            raise ChatError(
                f"{path}:{number}: no prompt found; a line needs a user message "
                '("text" with <|user|>, "messages", or "prompt")'
            )
        prompts.append(ComparePrompt(parsed[0], parsed[1], f"{path.name}:{number}"))
        if limit and len(prompts) >= limit:
            break
    if not prompts:
        raise ChatError(f"{path} has no prompts")
    return prompts


def compare_output_path(sides: Sequence[Side], workspace_root: Path) -> Path:
    """Where a batch compare goes: the run folder of the (rightmost) adapter, else its adapter folder."""
    for side in reversed(sides):
        if not side.is_base:
            folder = side.run_dir or side.adapter_dir
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = folder / f"compare-{stamp}.jsonl"
            n = 1
            while path.exists():  # never overwrite an earlier compare
                n += 1
                path = folder / f"compare-{stamp}-{n}.jsonl"
            return path
    raise ChatError("both sides are the base model: pick an adapter for one side to compare")


def compare_record(index: int, item: ComparePrompt, sides: Sequence[Side], answers, stats) -> dict:
    return {
        "index": index,
        "source": item.source,
        "prompt": item.prompt,
        "reference": item.reference,
        "left": {"side": sides[0].label, "answer": answers[0], "tokens": stats[0].tokens, "finish": stats[0].finish},
        "right": {"side": sides[1].label, "answer": answers[1], "tokens": stats[1].tokens, "finish": stats[1].finish},
    }


def write_compare(path: Path, records: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def model_path(workspace: Workspace) -> str:
    """The workspace's model as mlx-lm loads it (core.models finds it); ChatError when there is none."""
    try:
        return models.workspace_model(workspace)
    except models.ModelNotFound as exc:
        raise ChatError(str(exc)) from None


def run_compare(
    chat_model,
    prompts: Sequence[ComparePrompt],
    sides: Sequence[Side],
    settings: GenerationSettings,
    out_path: Path | None,
    cancel: threading.Event | None = None,
    on_record: Callable[[dict], None] | None = None,
    tools: ChatTools | None = None,
) -> list[dict]:
    """Every prompt through both sides (two rows of one batch each); the records, also written as JSONL.

    The file is rewritten atomically after each prompt, so a stopped compare keeps what it finished.
    """
    chat_model.set_sides(sides)
    records = []
    for index, item in enumerate(prompts):
        if cancel is not None and cancel.is_set():
            break
        tokens = chat_model.prompt_tokens(Conversation().messages(item.prompt, settings.system_prompt), tools)
        answers, stats = chat_model.answer_all([tokens, tokens], [0, 1], settings, cancel)
        record = compare_record(index, item, sides, answers, stats)
        records.append(record)
        if out_path is not None:
            try:
                write_compare(out_path, records)
            except OSError as exc:
                raise ChatError(f"cannot write {out_path}: {exc.strerror or exc}") from None
        if on_record is not None:
            on_record(record)
    return records


def batch_compare(
    model,
    workspace: Workspace,
    sides: Sequence[Side | None],
    settings: GenerationSettings,
    prompts_path: Path | None = None,
    limit: int | None = None,
    cancel: threading.Event | None = None,
    on_start: Callable[[Path, int], None] | None = None,
    on_record: Callable[[dict], None] | None = None,
    items: Sequence[ComparePrompt] | None = None,
    tools: ChatTools | None = None,
) -> tuple[Path, list[dict]]:
    """The prompts of a file (default: the test split), or `items`, through both sides (with `tools` given to the
    chat template), saved beside the run.

    Returns the JSONL path and the records (one per prompt answered before any stop).
    """
    if any(side is None for side in sides):
        raise ChatError("pick a model for both panes first (ctrl+f / ctrl+r on the Chat screen)")
    if items:
        prompts = list(items)[:limit] if limit else list(items)
    else:
        path = workspace.resolve(prompts_path) if prompts_path else workspace.data_dir / "test.jsonl"
        prompts = read_prompts(path, limit)
    out = compare_output_path(sides, workspace.root)
    if on_start is not None:
        on_start(out, len(prompts))
    records = run_compare(model, prompts, sides, settings, out, cancel, on_record, tools)
    return out, records


# -- the model worker: all MLX work of the app process, one thread ----------------------------
class ModelWorker:
    """One long-lived thread that runs every MLX job of the app, in order, on its own MLX stream.

    On Metal, streams are thread-local: the stream is created inside the thread that uses it. The
    loaded model stays with the worker, so leaving and re-entering the Chat screen keeps it.
    A job is a callable taking the worker; `stop()` sets the running job's cancel event.
    """

    def __init__(self):
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.cancel = threading.Event()  # the running job's; replaced for every job
        self._model = None
        self.busy = False

    def submit(self, job: Callable[["ModelWorker"], None], keep_awake: str | None = None) -> threading.Event:
        """Queue a job; returns the event that stops it. keep_awake: for a long job (export, verify, eval, batch
        compare), why the machine is kept awake while it runs (core/awake.kept_awake, as a run is)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=MODEL_THREAD_NAME, daemon=True)
                self._thread.start()
        event = threading.Event()
        self._jobs.put((job, event, keep_awake))
        return event

    def stop(self) -> None:
        """Stop the running job at its next token."""
        self.cancel.set()

    def close(self, timeout: float = 5.0) -> None:
        self.cancel.set()
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout)

    def unload(self, timeout: float = 120.0) -> int:
        """Let the loaded model go (a training run is about to need the memory: on a Mac both would share it).
        Returns the bytes of weights freed, 0 when none was loaded. The next chat loads it again."""
        if self._model is None:
            return 0
        done, freed = threading.Event(), []

        def job(worker: "ModelWorker") -> None:
            try:
                import mlx.core as mx
                from mlx.utils import tree_flatten

                model = worker._model
                freed.append(sum(v.nbytes for _, v in tree_flatten(model.model.parameters())) if model else 0)
                worker._model = model = None
                mx.clear_cache()
            finally:
                done.set()

        self.submit(job)
        done.wait(timeout)
        return freed[0] if freed else 0

    def chat_model(self, path: str):
        """The loaded model at `path`, loading it once (call from a job only)."""
        if self._model is None or self._model.model_path != path:
            from phi3tui.core.chat.model import ChatModel

            self._model = None  # let the old one go before loading another
            self._model = ChatModel(path)
        return self._model

    def _loop(self) -> None:
        import mlx.core as mx

        new_stream = getattr(mx, "new_thread_local_stream", mx.new_stream)
        try:
            with mx.stream(new_stream(mx.default_device())):
                while True:
                    item = self._jobs.get()
                    if item is None:
                        return
                    job, self.cancel, awake_why = item
                    self.busy = True
                    try:
                        if awake_why:
                            from phi3tui.core.awake import kept_awake

                            with kept_awake(awake_why):
                                job(self)
                        else:
                            job(self)
                    except Exception:  # a job reports its own errors; never let one kill the worker
                        import traceback

                        traceback.print_exc()
                    finally:
                        self.busy = False
        finally:
            # MLX wants a thread's streams cleared before the thread ends, or the process may abort
            # at exit ("terminate called without an active exception", ml-explore/mlx#3126).
            if hasattr(mx, "clear_streams"):
                mx.clear_streams()


# -- the chat session the screen drives ------------------------------------------------------
@dataclass
class ChatSession:
    """Both panes' sides and conversations, and the settings. Plain state; its model work runs on
    the worker (the methods taking `model` are called from worker jobs, the CLI or tests)."""

    workspace: Workspace
    sides: list[Side | None] = field(default_factory=lambda: [BASE, None])  # None: nothing chosen yet
    conversations: list[Conversation] = field(default_factory=lambda: [Conversation(), Conversation()])
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    tools: ChatTools | None = None  # tool definitions both panes' chat template gets (None: no tools)

    def load_tools(self, path: Path | str | None) -> ChatTools | None:
        """Give both panes the tool definitions of `path` (a workspace-relative or absolute JSON file), or none
        (path None). ChatError names the file and what is wrong; then nothing changes."""
        self.tools = load_tools(self.workspace.resolve(path)) if path else None
        return self.tools

    def tools_note(self, model) -> str:
        """"" when the model's chat template renders the loaded tool definitions; else why they are not seen."""
        return tools_note(model.tokenizer, self.tools, Path(str(model.model_path)).name)

    def default_sides(self) -> None:
        """Base on the left, the newest run's latest adapter on the right (ChatError when none)."""
        self.sides = [BASE, None]
        self.sides[1] = newest_adapter(self.workspace.root)

    def choose(self, model, pane: int, side: Side) -> None:
        """Run `side` in `pane`, loading only its adapter weights; on ChatError nothing changes."""
        sides = list(self.sides)
        sides[pane] = side
        model.set_sides([s or BASE for s in sides])
        self.sides = sides
        self.conversations[pane] = Conversation()  # a new model's answers start a new conversation

    def clear(self) -> None:
        self.conversations = [Conversation(), Conversation()]

    def ask(self, model, user_text: str, cancel: threading.Event | None = None):
        """The panes that have a side answer `user_text` together, streaming; each conversation gets
        its answer at the end. Yields (events, stats) with events' rows numbered by pane."""
        panes = [p for p, side in enumerate(self.sides) if side is not None]
        if not panes:
            raise ChatError("no side chosen: pick the model for a pane first")
        model.set_sides([self.sides[p] for p in panes])
        prompts = [
            model.prompt_tokens(self.conversations[p].messages(user_text, self.settings.system_prompt), self.tools)
            for p in panes
        ]
        answers = {p: "" for p in panes}
        for events, stats in model.generate(prompts, list(range(len(panes))), self.settings, cancel):
            events = [StepEvent(panes[e.row], e.text, e.token, e.finish) for e in events]
            for event in events:
                answers[event.row] += event.text
            yield events, {panes[i]: s for i, s in enumerate(stats)}
        for p in panes:
            self.conversations[p].add(user_text, answers[p])


# -- headless demo step ----------------------------------------------------------------------
def demo_step(workspace: Workspace, state: dict) -> str:
    """Three test prompts through base and adapted side by side (greedy), saved as a batch compare."""
    from phi3tui.core.chat.model import ChatModel

    if state.get("adapter_dir"):
        adapter = side_for_path(Path(state["adapter_dir"]))
    else:
        adapter = newest_adapter(workspace.root)
    model = ChatModel(model_path(workspace))
    out, records = batch_compare(model, workspace, [BASE, adapter], GenerationSettings(max_tokens=48), limit=3)
    changed = sum(r["left"]["answer"] != r["right"]["answer"] for r in records)
    state["compare_path"] = str(out)
    lines = [f"{len(records)} test prompts, base vs {adapter.label}: {changed} answers changed; table in {out}"]
    for r in records:
        lines.append(f"    prompt:  {_one_line(r['prompt'])}")
        lines.append(f"    base:    {_one_line(r['left']['answer'])}")
        lines.append(f"    adapted: {_one_line(r['right']['answer'])}")
    return "\n".join(lines)


def _one_line(text: str, width: int = 100) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"

