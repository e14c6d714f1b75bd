"""The Export wizard (F5) driven by keys at 80x24: run everything, see the agreement, confirm before replacing."""

from __future__ import annotations

import sys

from test_export_fixtures import RUN_ID, trained_template, trained_ws  # noqa: F401

from phi3tui.app import Phi3App
from phi3tui.core.workspace import Workspace


async def wait_idle(pilot, screen, seconds: float = 120) -> None:
    for _ in range(int(seconds / 0.2)):
        await pilot.pause(0.2)
        if not screen.busy:
            break
    await pilot.pause(0.2)


def log_text(screen) -> str:
    return "\n".join(screen.log_lines)


def shown_mark(steps, step: str) -> str:
    """The mark the step list draws after the step's label (the prompt's last character)."""
    return str(steps.get_option(step).prompt).rstrip()[-1]


async def test_verify_without_llama_cpp_is_not_ticked(trained_ws, monkeypatch):
    """llama-cpp-python made unimportable: Verify shows a read-back, not a ✓."""
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` now raises ImportError
    app = Phi3App(Workspace(trained_ws), start_mode="export")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        screen = app.screen
        await pilot.press("a")
        await wait_idle(pilot, screen)
        steps = screen.query_one("#export-steps")
        assert [steps.states[s] for s in ("fuse", "gguf", "verify")] == ["done", "done", "partial"], log_text(screen)
        assert shown_mark(steps, "fuse") == "✓" and shown_mark(steps, "verify") == "~"
        assert "read back; llama.cpp not installed" in log_text(screen)
        await pilot.press("down", "down", "down", "down")  # highlight Verify: its plan says what it did not do
        await pilot.pause(0.2)
        assert steps.current == "verify"
        assert "last run: read back; llama.cpp not installed" in str(screen.query_one("#export-plan").render())


async def test_run_all_from_the_keyboard_then_confirm_before_replacing(trained_ws):
    from phi3tui.core.export.verify import llama_cpp_available

    app = Phi3App(Workspace(trained_ws), start_mode="export")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        screen = app.screen
        choices = str(screen.query_one("#export-choices").render())
        assert f"run {RUN_ID}, adapters.safetensors" in choices and "GGUF f16" in choices
        await pilot.press("t")  # f16 -> f32
        assert screen.job.outtype == "f32"
        await pilot.press("t", "t", "t", "t", "t", "t", "t")  # round the eight types back to f16
        assert screen.job.outtype == "f16"
        await pilot.press("a")
        await wait_idle(pilot, screen)
        steps = screen.query_one("#export-steps")
        text = log_text(screen)
        created = f"created Ollama model phi3-{RUN_ID}" in text
        # ✓ only for what was checked: Verify's needs llama.cpp to agree, Ollama's a model created in Ollama.
        verify_state = "done" if llama_cpp_available() else "partial"
        ollama_state = "done" if created else "partial"
        assert [steps.states[s] for s in ("fuse", "gguf", "verify", "ollama")] == [
            "done", "done", verify_state, ollama_state], text
        assert [shown_mark(steps, s) for s in ("fuse", "gguf", "verify", "ollama")] == [
            "✓", "✓", "✓" if verify_state == "done" else "~", "✓" if created else "~"]
        out_dir = trained_ws / "exports" / f"phi3-{RUN_ID}"
        assert (out_dir / f"phi3-{RUN_ID}-f16.gguf").is_file() and (out_dir / "Modelfile").is_file()
        assert "read back: " in text and "complete" in text
        if llama_cpp_available():
            assert "llama.cpp agrees with MLX (f16)" in text and "same tokens" in text
        else:
            assert "read back; llama.cpp not installed" in text
        from phi3tui.core.export.ollama import find_ollama

        if find_ollama() is None:
            assert not created and f"ollama create phi3-{RUN_ID} -f Modelfile" in text
            assert steps.notes["ollama"].startswith("Modelfile written; model not created (ollama is not installed")
        # Fuse again: the fused folder exists, so the wizard asks; "n" keeps it untouched.
        before = (out_dir / "fused" / "model.safetensors").stat().st_mtime_ns
        await pilot.press("down")  # highlight Fuse (Choose is first)
        await pilot.press("r")
        await pilot.pause(0.3)
        assert app.screen.__class__.__name__ == "ConfirmDialog"
        await pilot.press("n")
        await pilot.pause(0.3)
        assert app.screen is screen and not screen.busy
        assert (out_dir / "fused" / "model.safetensors").stat().st_mtime_ns == before


async def test_without_adapters_the_wizard_says_to_train_first(demo_workspace):
    app = Phi3App(Workspace(demo_workspace), start_mode="export")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        screen = app.screen
        assert "none found (train first" in str(screen.query_one("#export-choices").render())
        await pilot.press("down", "r")  # try to fuse anyway
        await wait_idle(pilot, screen, 30)
        assert "failed: no adapter chosen" in log_text(screen)
        assert screen.query_one("#export-steps").states["fuse"] == "failed"
        await pilot.press("c")  # the adapter picker opens and says there is nothing yet
        await pilot.pause(0.2)
        assert app.screen.__class__.__name__ == "Picker"
        await pilot.press("escape")
