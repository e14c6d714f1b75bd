"""Long MCP jobs (eval, export, chat_compare) with `wait: false`: the call returns a handle at once, `job_status` (and
the phi3tui://jobs/{job} resource) follows it to done, and its result is what `phi3tui eval --json` prints. Driven
through the `mcp` SDK's stdio client against a real `phi3tui mcp` subprocess, on the session's trained demo run."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

pytest.importorskip("mcp", reason="the mcp extra is not installed (pip install 'phi3tui[mcp]')")

from conftest import run_cli  # noqa: E402
from test_mcp import content  # noqa: E402

RUN_ID = "20260101-0000-r1"


async def poll_to_end(session, handle: str) -> tuple[dict, list[dict]]:
    """job_status until the job has finished, as an agent would; (the last status, every status seen)."""
    import anyio

    seen = []
    with anyio.fail_after(300):
        while True:
            answer = await session.call_tool("job_status", {"job": handle})
            assert not answer.isError, answer.content
            seen.append(content(answer))
            if seen[-1]["state"] in ("done", "failed"):
                return seen[-1], seen
            await anyio.sleep(0.2)


async def test_an_eval_started_with_a_handle_is_polled_to_the_cli_s_result(trained_r1_template, tmp_path):
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client
    from pydantic import AnyUrl

    workspace = tmp_path / "ws"
    shutil.copytree(trained_r1_template, workspace)
    (workspace / "tools.json").write_text('[{"type": "function", "function": {"parameters": {}}}]', encoding="utf-8")
    server = StdioServerParameters(command=sys.executable, args=["-m", "phi3tui", "mcp", str(workspace)],
                                   env=dict(os.environ))
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert listed["job_status"].inputSchema["required"] == ["job"]
        for name in ("eval", "export", "chat_compare"):
            assert listed[name].inputSchema["properties"]["wait"]["default"] is True  # simple clients still block

        # What can be checked at once is refused at once, as the blocking call refuses it: no job is made.
        outside = await session.call_tool("eval", {"mc": "/etc/passwd", "wait": False})
        assert outside.isError and "outside the workspace" in outside.content[0].text
        bad_tools = await session.call_tool("chat_compare", {"tools": "tools.json", "wait": False})
        assert bad_tools.isError and "tools.json: tool 1 has no function \"name\"" in bad_tools.content[0].text
        unknown = await session.call_tool("job_status", {"job": "eval-nope"})
        assert unknown.isError and "no job 'eval-nope'" in unknown.content[0].text

        started = await session.call_tool("eval", {"run": RUN_ID, "limit": 2, "max_tokens": 4, "wait": False})
        assert not started.isError, started.content
        handle = content(started)
        assert handle["job"].startswith("eval-") and handle["state"] in ("queued", "running", "done")
        assert handle["result"] is None or handle["state"] == "done"
        assert handle["arguments"] == {"run": RUN_ID, "limit": 2, "max_tokens": 4}

        final, seen = await poll_to_end(session, handle["job"])
        assert final["state"] == "done" and final["error"] is None, final
        assert final["started"] and final["ended"]
        assert final["progress"] is not None  # the eval's own (done, total, what) reports, kept for pollers

        cli = run_cli("eval", str(workspace), "--run", RUN_ID, "--limit", "2", "--max-tokens", "4", "--json")
        assert cli.returncode == 0, cli.stderr
        assert {k: final["result"][k] for k in ("left", "right")} == json.loads(cli.stdout)
        assert final["result"]["saved"].startswith(str(workspace))

        resource = await session.read_resource(AnyUrl(f"phi3tui://jobs/{handle['job']}"))
        assert json.loads(resource.contents[0].text) == final

        # A job whose work fails ends failed with the CLI's message; the blocking call gives it as a tool error.
        verify = await session.call_tool("export", {"step": "verify", "name": "nothing-yet", "wait": False})
        assert not verify.isError, verify.content
        failed, _ = await poll_to_end(session, content(verify)["job"])
        assert failed["state"] == "failed" and failed["result"] is None and failed["error"], failed
        blocking = await session.call_tool("export", {"step": "verify", "name": "nothing-yet"})
        assert blocking.isError and blocking.content[0].text.endswith(failed["error"])  # FastMCP names the tool first

        # A call that waits still sends its progress: one notification per compared prompt, up to done.
        heard = []

        async def on_progress(progress, total, message):
            heard.append((progress, total, message))

        compared = await session.call_tool("chat_compare", {"run": RUN_ID, "prompts": ["Why?", "Is it?"],
                                                            "max_tokens": 2}, progress_callback=on_progress)
        assert not compared.isError, compared.content
        assert len(content(compared)["records"]) == 2
        assert heard and heard[-1] == (2, 2, "compare"), heard
        assert not (await session.call_tool("workspace_status", {})).isError  # still answering
