"""`phi3tui mcp [WORKSPACE]`: the workspace's jobs as Model Context Protocol tools, served over stdio.

Thin: each tool is one call into core.agent_tools (the same core calls the CLI commands make). A refused job is an MCP
tool error carrying the CLI's message; the server goes on answering. The `mcp` SDK is imported here, late, so no
other command pays for it (install it with `pip install 'phi3tui[mcp]'`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any  # the config_set tool's value: any JSON value (FastMCP reads the annotation by name)

MCP_MISSING = "the `mcp` package is not installed: `pip install 'phi3tui[mcp]'` (or `pip install mcp`)"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "mcp",
        help="serve the workspace's jobs (data check, train, runs, eval, export) to an AI agent as MCP tools over stdio",
        description=(
            "An MCP server over stdio for an agent (Claude Desktop, an IDE, ...): tools to check the data and the "
            "config, set a config key, start or queue a training run (or a sweep), list runs, read their status and "
            "metrics, stop and resume them, evaluate and compare base vs adapter, and export. Paths are confined to "
            "the workspace; nothing is replaced without force."
        ),
    )
    p.add_argument("workspace_arg", nargs="?", metavar="WORKSPACE", help="the workspace folder (default: -w, else the current folder)")
    p.add_argument("-w", "--workspace", default=None, metavar="DIR", help="the workspace folder")
    p.set_defaults(func=run)


def build_server(workspace):
    """The FastMCP server with one tool per core.agent_tools job, bound to `workspace`."""
    from mcp.server.fastmcp import Context, FastMCP
    from mcp.server.fastmcp.exceptions import ToolError

    from phi3tui.core import agent_tools as tools
    from phi3tui.core.workspace import NotAWorkspace

    server = FastMCP("phi3tui", instructions=(
        f"phi3tui fine-tunes Phi models with mlx-lm in the workspace {workspace.root}. Check the data and config "
        "before train_start; runs go on detached: poll run_status, read run_metrics."
    ))

    def call(job, *args, **kwargs):
        # The CLI's message as a tool error: an agent reads what to do, and the server keeps answering.
        try:
            return job(workspace, *args, **kwargs)
        except (tools.ToolRefused, NotAWorkspace) as exc:
            raise ToolError(str(exc)) from None
        except OSError as exc:
            raise ToolError(f"{exc.filename or ''}: {exc.strerror or exc}") from None

    async def call_reporting(ctx, job, *args):
        """A long job on a worker thread, its progress sent as MCP progress notifications (to a client that asked
        for them with a progress token), at most five a second besides the last."""
        import time

        import anyio
        from anyio import from_thread

        last = [0.0]

        def progress(done: int, total: int, message: str) -> None:
            now = time.monotonic()
            if done < total and now - last[0] < 0.2:
                return
            last[0] = now
            from_thread.run(ctx.report_progress, done, total, message)

        return await anyio.to_thread.run_sync(lambda: call(job, *args, progress=progress))

    @server.tool()
    def workspace_status() -> dict:
        """The workspace folder, its config file, the one-line status (live run or the newest run's end), the runs."""
        return call(tools.workspace_status)

    @server.tool()
    def data_check(data: str | None = None) -> dict:
        """Check every line of train/valid/test.jsonl (as `phi3tui data check`). data: a folder inside the
        workspace (default: the config's data folder). Problems name split:line."""
        return call(tools.data_check, data)

    @server.tool()
    def config_check() -> dict:
        """Check lora_config.yaml as `phi3tui config check`: migrations needed and the pre-run gate's findings."""
        return call(tools.config_check)

    @server.tool()
    def config_set(key: str, value: Any) -> dict:
        """Set one key of lora_config.yaml in place (comments and layout kept), e.g. key "iters" value 200 or key
        "lora_parameters.rank" value 16; an edit that does not read back as asked changes nothing."""
        return call(tools.config_set, key, value)

    @server.tool()
    def runs_list() -> list[dict]:
        """Every run, newest first: id, state, iteration/iters, best validation loss, reason."""
        return call(tools.runs_list)

    @server.tool()
    def run_status(run: str) -> dict:
        """One run's run.json as it truly stands and its details. run: a run id, unique id prefix, or `latest`."""
        return call(tools.run_status, run)

    @server.tool()
    def run_metrics(run: str, points: int = 200) -> dict:
        """One run's train and validation loss curves (at most about `points` points each), last report, test loss."""
        return call(tools.run_metrics, run, points)

    @server.tool()
    def run_stop(run: str) -> dict:
        """Ask a live run to save its adapter at its next step and stop."""
        return call(tools.run_stop, run)

    @server.tool()
    def run_resume(run: str, smaller: bool = False) -> dict:
        """Start a stopped/failed/out-of-memory run again from its last checkpoint (smaller: half the batch)."""
        return call(tools.run_resume, run, smaller)

    @server.tool()
    def train_start(iters: int | None = None, queue: bool = False, sweep: str | None = None) -> dict:
        """Start a detached training run of lora_config.yaml now (refused while one is live), or add it to the
        queue (queue=true), or queue a sweep's grid (sweep: as `phi3tui train --sweep`, e.g.
        "learning_rate=1e-5,1e-4"). iters: override the config's iters. Poll the returned run ids with run_status."""
        return call(tools.train_start, iters, queue, sweep)

    async def evaluate(run: str | None = None, checkpoint: str | None = None, mc: str | None = None,
                       limit: int | None = None, max_tokens: int = 128, ctx=None) -> dict:
        """Score the base model against a run's adapter (default: the newest run's; checkpoint: an iteration or
        latest) as `phi3tui eval --json`: test loss, perplexity, MC1/MC2, exact match, ROUGE-L. mc: a multiple-choice
        file inside the workspace (default: the test records with "incorrect" answers); limit: the first N items."""
        return await call_reporting(ctx, tools.evaluate, run, checkpoint, mc, limit, max_tokens)

    evaluate.__annotations__["ctx"] = Context  # the class itself: FastMCP finds the context parameter by its type
    server.tool(name="eval")(evaluate)

    @server.tool()
    def chat_compare(run: str | None = None, checkpoint: str | None = None, prompts: list[str] | None = None,
                     limit: int | None = None, max_tokens: int = 256) -> dict:
        """The base model and a run's adapter (default: the newest run's) answer the same prompts greedily, as
        `phi3tui chat compare` (prompts: default data/test.jsonl's; limit: the first N); saved in the run folder."""
        return call(tools.chat_compare, run, checkpoint, prompts, limit, max_tokens)

    async def export(step: str, run: str | None = None, checkpoint: int | None = None, name: str | None = None,
                     outtype: str = "f16", force: bool = False, ctx=None) -> dict:
        """Export a run's adapter as `phi3tui export STEP`: step is fuse, gguf, lora-gguf, verify, ollama, lmstudio or
        all (run: default the newest run; name: exports/NAME). An existing output is replaced only with force=true."""
        return await call_reporting(ctx, tools.export, step, run, checkpoint, name, outtype, force)

    export.__annotations__["ctx"] = Context
    server.tool()(export)

    # The same data as resources, for clients that attach a run's curves or log to the conversation.
    @server.resource("phi3tui://runs/{run}/metrics", mime_type="application/json")
    def run_metrics_resource(run: str) -> str:
        """A run's downsampled loss curves, last report and test loss (as the run_metrics tool)."""
        import json

        return json.dumps(call(tools.run_metrics, run))

    @server.resource("phi3tui://runs/{run}/log", mime_type="text/plain")
    def run_log_resource(run: str) -> str:
        """The last 200 lines of a run's log.txt."""
        return call(tools.run_log, run)

    return server


def run(args: argparse.Namespace) -> int:
    from phi3tui.core.workspace import NotAWorkspace, Workspace

    try:
        workspace = Workspace.open(args.workspace_arg or args.workspace or ".")
    except NotAWorkspace as exc:
        print(f"phi3tui mcp: {exc}\nhint: {exc.hint}", file=sys.stderr)
        return 2
    try:
        server = build_server(workspace)
    except ImportError:
        print(f"phi3tui mcp: {MCP_MISSING}", file=sys.stderr)
        return 2
    server.run("stdio")  # stdout is the protocol's: nothing else may print there
    return 0
