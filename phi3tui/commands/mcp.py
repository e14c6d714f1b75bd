"""`phi3tui mcp [WORKSPACE]`: the workspace's jobs as Model Context Protocol tools, served over stdio.

Thin: each tool is one call into core.agent_tools (the same core calls the CLI commands make). A refused job is an MCP
tool error carrying the CLI's message; the server goes on answering. The `mcp` SDK is imported here, late, so no
other command pays for it (install it with `pip install 'phi3tui[mcp]'`)."""

from __future__ import annotations

import argparse
import sys
from contextlib import asynccontextmanager
from typing import Any  # the config_set tool's value: any JSON value (FastMCP reads the annotation by name)

MCP_MISSING = "the `mcp` package is not installed: `pip install 'phi3tui[mcp]'` (or `pip install mcp`)"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "mcp",
        help="serve the workspace's jobs (data check, train, runs, eval, export) to an AI agent as MCP tools over stdio",
        description=(
            "An MCP server over stdio for an agent (Claude Desktop, an IDE, ...): tools to check the data and the "
            "config, set a config key, start or queue a training run (or a sweep), list runs, read their status and "
            "metrics, stop and resume them, evaluate and compare base vs adapter, and export (these three wait for "
            "their result, or with wait=false return a job handle to poll with job_status). Paths are confined to "
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

    jobs = tools.Jobs(workspace)

    @asynccontextmanager
    async def lifespan(_server):
        try:
            yield {}
        finally:
            jobs.close()  # the worker thread lets its MLX stream go before the process ends

    server = FastMCP("phi3tui", lifespan=lifespan, instructions=(
        f"phi3tui fine-tunes Phi models with mlx-lm in the workspace {workspace.root}. Check the data and config "
        "before train_start; runs go on detached: poll run_status, read run_metrics. eval, export and chat_compare "
        "with wait=false return a job handle at once: poll job_status."
    ))

    def refusing(job, *args, **kwargs):
        # The CLI's message as a tool error: an agent reads what to do, and the server keeps answering.
        try:
            return job(*args, **kwargs)
        except (tools.ToolRefused, NotAWorkspace) as exc:
            raise ToolError(str(exc)) from None
        except OSError as exc:
            raise ToolError(f"{exc.filename or ''}: {exc.strerror or exc}") from None

    def call(job, *args, **kwargs):
        return refusing(job, workspace, *args, **kwargs)

    async def long_job(ctx, tool: str, wait: bool, **arguments) -> dict:
        """Start a long job (refused at once as a tool error when its arguments are wrong). wait=false: its handle
        and state now. wait=true: its progress as MCP progress notifications (to a client that asked for them with
        a progress token; at most five a second besides the last), then its result, or its error as a tool error."""
        import anyio

        job = refusing(jobs.start, tool, **arguments)
        if not wait:
            return job.status()
        seen, sent = -1, None
        while True:
            seen = await anyio.to_thread.run_sync(job.wait_change, seen, 1.0)
            now = job.status()  # one snapshot: the last progress is in it once the state is finished
            progress = now["progress"]
            if progress and progress != sent:
                sent = progress
                await ctx.report_progress(progress["done"], progress["total"], progress["message"])
            if now["state"] in (tools.DONE, tools.FAILED):
                break
            await anyio.sleep(0.2)
        if now["error"]:
            raise ToolError(now["error"])
        return now["result"]

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
                       limit: int | None = None, max_tokens: int = 128, wait: bool = True, ctx=None) -> dict:
        """Score the base model against a run's adapter (default: the newest run's; checkpoint: an iteration or
        latest) as `phi3tui eval --json`: test loss, perplexity, MC1/MC2, exact match, ROUGE-L. mc: a multiple-choice
        file inside the workspace (default: the test records with "incorrect" answers); limit: the first N items.
        wait=false: return {"job": id, ...} at once and poll job_status for the result."""
        return await long_job(ctx, "eval", wait, run=run, checkpoint=checkpoint, mc=mc, limit=limit,
                              max_tokens=max_tokens)

    evaluate.__annotations__["ctx"] = Context  # the class itself: FastMCP finds the context parameter by its type
    server.tool(name="eval")(evaluate)

    async def chat_compare(run: str | None = None, checkpoint: str | None = None, prompts: list[str] | None = None,
                           limit: int | None = None, max_tokens: int = 256, tools: str | None = None,
                           wait: bool = True, ctx=None) -> dict:
        """The base model and a run's adapter (default: the newest run's) answer the same prompts greedily, as
        `phi3tui chat compare` (prompts: default data/test.jsonl's; limit: the first N; tools: a JSON file of tool
        definitions inside the workspace); saved in the run folder. wait=false: a job handle at once."""
        return await long_job(ctx, "chat_compare", wait, run=run, checkpoint=checkpoint, prompts=prompts,
                              limit=limit, max_tokens=max_tokens, tools=tools)

    chat_compare.__annotations__["ctx"] = Context
    server.tool()(chat_compare)

    async def export(step: str, run: str | None = None, checkpoint: int | None = None, name: str | None = None,
                     outtype: str = "f16", force: bool = False, wait: bool = True, ctx=None) -> dict:
        """Export a run's adapter as `phi3tui export STEP`: step is fuse, gguf, lora-gguf, verify, ollama, lmstudio or
        all (run: default the newest run; name: exports/NAME). An existing output is replaced only with force=true.
        wait=false: return {"job": id, ...} at once and poll job_status for the result."""
        return await long_job(ctx, "export", wait, step=step, run=run, checkpoint=checkpoint, name=name,
                              outtype=outtype, force=force)

    export.__annotations__["ctx"] = Context
    server.tool()(export)

    @server.tool()
    def job_status(job: str) -> dict:
        """A job started by eval, export or chat_compare (wait=false): state (queued, running, done, failed),
        progress {done, total, message}, then result (what the call returns when it waits) or error."""
        return refusing(lambda: jobs.get(job).status())

    # The same data as resources, for clients that attach a run's curves or log to the conversation.
    @server.resource("phi3tui://runs/{run}/metrics", mime_type="application/json")
    def run_metrics_resource(run: str) -> str:
        """A run's downsampled loss curves, last report and test loss (as the run_metrics tool)."""
        import json

        return json.dumps(call(tools.run_metrics, run))

    @server.resource("phi3tui://jobs/{job}", mime_type="application/json")
    def job_resource(job: str) -> str:
        """A long job's state, progress and result (as the job_status tool)."""
        import json

        return json.dumps(refusing(lambda: jobs.get(job).status()))

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
