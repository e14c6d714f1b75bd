"""A new export target is one class implementing ExportStep plus one line in EXPORT_STEPS: a toy step (the GGUF's
SHA-256 written beside it) registered here shows in the Export wizard's list, is a `phi3tui export` subcommand, and
runs in run-all (the wizard's `a`, `phi3tui export all`) after the GGUF it reads."""

from __future__ import annotations

import hashlib
import sys

import pytest
from test_export_fixtures import RUN_ID, trained_template, trained_ws  # noqa: F401

from phi3tui.core.export import ExportError, Progress, no_progress
from phi3tui.core.export import steps as export_steps
from phi3tui.core.export.steps import StepOutcome


class ChecksumStep:
    """Writes NAME-TYPE.gguf.sha256 (the `sha256sum` format) beside the export's GGUF."""

    id, label, demo_title = "checksum", "Checksum", None
    help = "write the GGUF's SHA-256 beside it (NAME-TYPE.gguf.sha256)"

    def target(self, job):
        return job.gguf_path.with_name(job.gguf_path.name + ".sha256")

    def describe(self, job) -> list[str]:
        return [f"write {self.target(job).name}: the SHA-256 of {job.gguf_path.name}"]

    def outputs(self, job):
        return [self.target(job)]

    def in_run_all(self, job) -> bool:
        return not job.use_adapter_in_ollama

    def run(self, job, progress: Progress = no_progress) -> StepOutcome:
        if not job.gguf_path.is_file():
            raise ExportError(f"{job.gguf_path} is missing: run `phi3tui export gguf` first")
        if self.target(job).exists() and not job.force:
            raise ExportError(f"{self.target(job)} exists: give --force to replace it")
        digest = hashlib.sha256(job.gguf_path.read_bytes()).hexdigest()
        self.target(job).write_text(f"{digest}  {job.gguf_path.name}\n")
        progress(1, 1, "checksum written")
        job.results[self.id] = digest
        return StepOutcome(self.id, (f"sha256 {digest} -> {self.target(job).name}",), result=digest)


@pytest.fixture
def with_checksum_step(monkeypatch):
    registry = export_steps.EXPORT_STEPS
    at = [s.id for s in registry].index("gguf") + 1
    monkeypatch.setattr(export_steps, "EXPORT_STEPS", registry[:at] + (ChecksumStep(),) + registry[at:])


def written_checksum(out_dir, name: str) -> str:
    gguf = out_dir / f"{name}-f16.gguf"
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert (out_dir / f"{name}-f16.gguf.sha256").read_text() == f"{digest}  {gguf.name}\n"
    return digest


def test_a_registered_step_is_a_cli_subcommand_and_runs_in_export_all(with_checksum_step, trained_ws, capsys, monkeypatch):
    from phi3tui.cli import main

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # verify reads the files back only: quicker
    with pytest.raises(SystemExit) as exited:
        main(["export", "--help"])
    assert exited.value.code == 0
    listed = capsys.readouterr().out
    assert "checksum" in listed and "write the GGUF's SHA-256 beside it" in listed
    assert listed.index("gguf ") < listed.index("checksum") < listed.index("lora-gguf")  # registry order

    assert main(["export", "all", "-w", str(trained_ws), "--name", "sum"]) == 0
    out = capsys.readouterr().out
    digest = written_checksum(trained_ws / "exports" / "sum", "sum")
    assert f"sha256 {digest} -> sum-f16.gguf.sha256" in out
    assert out.index("read back: ") < out.index("sha256 ") < out.index("wrote ")  # after the GGUF, before Ollama

    # Alone, through its own subcommand: it refuses to replace without --force, like every step.
    assert main(["export", "checksum", "-w", str(trained_ws), "--name", "sum"]) == 2
    assert "exists: give --force" in capsys.readouterr().err
    assert main(["export", "checksum", "-w", str(trained_ws), "--name", "sum", "--force"]) == 0
    assert f"sha256 {digest}" in capsys.readouterr().out


async def test_a_registered_step_is_listed_described_and_run_by_the_wizard(with_checksum_step, trained_ws, monkeypatch):
    from test_export_screen import log_text, shown_mark, wait_idle

    from phi3tui.app import Phi3App
    from phi3tui.core.workspace import Workspace

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    app = Phi3App(Workspace(trained_ws), start_mode="export")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        screen = app.screen
        steps = screen.query_one("#export-steps")
        assert list(steps.labels) == ["choose", "fuse", "gguf", "checksum", "lora-gguf", "verify", "ollama", "lmstudio"]
        assert "4 Checksum" in str(steps.get_option("checksum").prompt)
        await pilot.press("down", "down", "down")  # highlight Checksum: its plan is the step's describe()
        await pilot.pause(0.2)
        assert steps.current == "checksum"
        assert f"Checksum will:\n  • write phi3-{RUN_ID}-f16.gguf.sha256" in str(screen.query_one("#export-plan").render())
        await pilot.press("a")
        await wait_idle(pilot, screen)
        assert [steps.states[s] for s in ("fuse", "gguf", "checksum")] == ["done"] * 3, log_text(screen)
        created = f"created Ollama model phi3-{RUN_ID}" in log_text(screen)
        assert steps.states["ollama"] == ("done" if created else "partial"), log_text(screen)  # ✓ only once created
        assert shown_mark(steps, "checksum") == "✓"
        digest = written_checksum(trained_ws / "exports" / f"phi3-{RUN_ID}", f"phi3-{RUN_ID}")
        text = log_text(screen)
        assert f"— Checksum\nsha256 {digest}" in text
