"""`phi3tui mcp -w WS` is a real MCP server over stdio: the SDK's own stdio client starts it as a subprocess, lists
its tools, and calls them on the demo workspace. Each tool answers what the CLI's core call answers; a refused job is
a tool error with the CLI's message, and the server goes on answering."""

from __future__ import annotations

import json
import os
import sys

import pytest

pytest.importorskip("mcp", reason="the mcp extra is not installed (pip install 'phi3tui[mcp]')")

from conftest import run_cli  # noqa: E402

TOOLS = {"workspace_status", "data_check", "config_check", "runs_list", "run_status", "run_metrics", "run_stop",
         "run_resume", "train_start", "config_set", "eval", "chat_compare", "export"}


def content(result):
    """A tool's answer as data: its structured content (a list comes wrapped as {"result": [...]})."""
    data = result.structuredContent
    if data is None:
        data = json.loads(result.content[0].text)
    return data.get("result", data) if isinstance(data, dict) and set(data) == {"result"} else data


async def test_an_agent_lists_the_tools_checks_the_data_and_is_kept_inside_the_workspace(demo_workspace, tmp_path):
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    from phi3tui.core import agent_tools
    from phi3tui.core.workspace import Workspace

    train = demo_workspace / "data" / "train.jsonl"
    lines = train.read_text(encoding="utf-8").splitlines(keepends=True)
    bad_line = len(lines) + 1
    train.write_text("".join(lines) + "{not json\n", encoding="utf-8")

    server = StdioServerParameters(command=sys.executable, args=["-m", "phi3tui", "mcp", "-w", str(demo_workspace)],
                                   env=dict(os.environ))
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert TOOLS <= set(listed)
        assert listed["run_status"].inputSchema["required"] == ["run"]  # JSON-schema'd arguments
        assert "data" in listed["data_check"].inputSchema["properties"]
        assert "ctx" not in listed["export"].inputSchema["properties"]  # the context is the server's, not an argument

        status = await session.call_tool("workspace_status", {})
        assert not status.isError, status.content
        status = content(status)
        assert status["workspace"] == str(demo_workspace.resolve()) and status["runs"] == 0
        oneline = run_cli("runs", "status", "--oneline", "-w", str(demo_workspace))
        assert status["status"] == oneline.stdout.strip()  # what the CLI says

        checked = await session.call_tool("data_check", {})
        assert not checked.isError, checked.content
        checked = content(checked)
        assert checked["errors"] >= 1
        assert any(p["location"] == f"train:{bad_line}" and p["level"] == "error" for p in checked["problems"]), checked
        cli = run_cli("data", "check", str(demo_workspace))
        assert cli.returncode == 1 and cli.stdout.splitlines() == checked["lines"]  # the same report the CLI prints

        outside = await session.call_tool("data_check", {"data": str(tmp_path)})
        assert outside.isError
        assert "outside the workspace" in outside.content[0].text
        escaping = await session.call_tool("data_check", {"data": "../.."})
        assert escaping.isError and "outside the workspace" in escaping.content[0].text

        no_run = await session.call_tool("run_status", {"run": "nope"})
        assert no_run.isError and "nope" in no_run.content[0].text
        from mcp.shared.exceptions import McpError
        from pydantic import AnyUrl

        with pytest.raises(McpError, match="nope"):
            await session.read_resource(AnyUrl("phi3tui://runs/nope/log"))

        # One key set in place: the rest of the file (comments included) as it was.
        config = demo_workspace / "lora_config.yaml"
        before = config.read_text(encoding="utf-8")
        changed = await session.call_tool("config_set", {"key": "lora_parameters.rank", "value": 4})
        assert not changed.isError, changed.content
        assert content(changed)["value"] == 4
        from phi3tui.core.workspace import load_config_values

        assert load_config_values(config)["lora_parameters"]["rank"] == 4
        assert [line for line in before.splitlines() if line.lstrip().startswith("#")] == [
            line for line in config.read_text(encoding="utf-8").splitlines() if line.lstrip().startswith("#")]
        nothing = await session.call_tool("config_set", {"key": "", "value": 1})
        assert nothing.isError and "give the key to set" in nothing.content[0].text

        checked = content(await session.call_tool("config_check", {}))
        cli = run_cli("config", "check", str(config), "-w", str(demo_workspace))
        assert checked["lines"] and all(line in cli.stdout.splitlines() for line in checked["lines"]), cli.stdout
        assert f"{config}: {checked['errors']} error(s), {checked['warnings']} warning(s)" in cli.stdout

        runs = await session.call_tool("runs_list", {})  # the server still answers after the refusals
        assert not runs.isError and content(runs) == agent_tools.runs_list(Workspace.open(demo_workspace)) == []


async def test_an_agent_trains_polls_to_finished_reads_the_metrics_and_exports(demo_workspace, tmp_path):
    import anyio
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    from phi3tui.core.runs import END_STATES, downsample, find_run, read_metrics
    from phi3tui.core.workspace import Workspace

    lm_studio = tmp_path / "lm-studio-models"
    server = StdioServerParameters(command=sys.executable, args=["-m", "phi3tui", "mcp", str(demo_workspace)],
                                   env={**os.environ, "LMSTUDIO_MODELS_DIR": str(lm_studio)})
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        refused = await session.call_tool("train_start", {"iters": 0})
        assert refused.isError and "--iters must be at least 1" in refused.content[0].text
        bad_sweep = await session.call_tool("train_start", {"sweep": "rank"})
        assert bad_sweep.isError and "'rank' has no '='" in bad_sweep.content[0].text

        started = await session.call_tool("train_start", {"iters": 3})
        assert not started.isError, started.content
        (run,) = content(started)["runs"]
        assert not run["queued"]

        with anyio.fail_after(240):  # the runner is a detached process: poll its state as an agent would
            while True:
                status = content(await session.call_tool("run_status", {"run": run["id"]}))
                if status["info"]["state"] in END_STATES:
                    break
                await anyio.sleep(0.5)
        assert status["info"]["state"] == "finished", status

        listed = content(await session.call_tool("runs_list", {}))
        assert [(r["id"], r["state"], r["iteration"]) for r in listed] == [(run["id"], "finished", 3)]

        metrics = content(await session.call_tool("run_metrics", {"run": run["id"], "points": 2}))
        expected = read_metrics(find_run(Workspace.open(demo_workspace), run["id"]))
        assert metrics["train"]["iteration"] == downsample(expected.train_x, expected.train_y, 2)[0]
        assert metrics["val"]["loss"] == pytest.approx(downsample(expected.val_x, expected.val_y, 2)[1])

        # The same curves, and the log, as resources.
        from pydantic import AnyUrl

        resource = await session.read_resource(AnyUrl(f"phi3tui://runs/{run['id']}/metrics"))
        assert json.loads(resource.contents[0].text) == metrics
        log = await session.read_resource(AnyUrl(f"phi3tui://runs/{run['id']}/log"))
        assert "phi3tui runner" in log.contents[0].text

        # A finished run cannot be stopped or resumed: the runner's own refusal, as a tool error.
        stop = await session.call_tool("run_stop", {"run": run["id"]})
        assert stop.isError and "not running; nothing to stop" in stop.content[0].text
        assert not (await session.call_tool("workspace_status", {})).isError  # still answering

        # Evaluate base vs the run's adapter: the numbers `phi3tui eval --json` prints.
        scored = await session.call_tool("eval", {"run": run["id"], "limit": 2, "max_tokens": 4})
        assert not scored.isError, scored.content
        scored = content(scored)
        cli = run_cli("eval", str(demo_workspace), "--run", run["id"], "--limit", "2", "--max-tokens", "4", "--json")
        assert cli.returncode == 0, cli.stderr
        assert {k: scored[k] for k in ("left", "right")} == json.loads(cli.stdout)
        assert scored["right"]["mc2"] is not None and scored["saved"].startswith(str(demo_workspace))
        outside = await session.call_tool("eval", {"mc": "/etc/passwd"})
        assert outside.isError and "outside the workspace" in outside.content[0].text

        compared = await session.call_tool("chat_compare", {"run": run["id"], "prompts": ["Why is the sky blue?"],
                                                             "max_tokens": 4})
        assert not compared.isError, compared.content
        compared = content(compared)
        saved = [json.loads(line) for line in open(compared["saved"], encoding="utf-8")]
        assert [(r["left"], r["right"]) for r in compared["records"]] == [
            (r["left"]["answer"], r["right"]["answer"]) for r in saved if "left" in r]

        # Export the run's adapter: fuse, then the GGUF, then into LM Studio's (here temporary) models folder.
        for step in ("fuse", "gguf", "lmstudio"):
            done = await session.call_tool("export", {"step": step, "name": "agent"})
            assert not done.isError, (step, done.content)
        gguf = demo_workspace / "exports" / "agent" / "agent-f16.gguf"
        assert (lm_studio / "phi3tui" / "agent" / "agent-f16.gguf").read_bytes() == gguf.read_bytes()
        before = gguf.stat().st_mtime_ns
        again = await session.call_tool("export", {"step": "gguf", "name": "agent"})
        assert again.isError and "pass --force to replace it" in again.content[0].text  # the CLI's refusal
        assert gguf.stat().st_mtime_ns == before
        heard = []

        async def on_progress(progress, total, message):
            heard.append((progress, total, message))

        forced = await session.call_tool("export", {"step": "gguf", "name": "agent", "force": True},
                                         progress_callback=on_progress)
        assert not forced.isError, forced.content
        assert any(line.startswith("read back: ") for line in content(forced)["steps"][0]["lines"])
        assert heard and heard[-1][0] == heard[-1][1], heard  # progress notifications, up to done
