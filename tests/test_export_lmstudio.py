"""The LM Studio export step: the fused GGUF lands in LM Studio's models folder as <publisher>/<name>/<file>.gguf
(the layout LM Studio lists), whole, and is never replaced without --force. Here the models folder is a temporary one
(--models-dir or LMSTUDIO_MODELS_DIR), never the real ~/.lmstudio."""

from __future__ import annotations

import sys

import pytest
from test_export_fixtures import RUN_ID, trained_template, trained_ws  # noqa: F401

from phi3tui.core.export import ExportError


def test_the_gguf_lands_in_the_models_folder_and_is_not_replaced_without_force(trained_ws, tmp_path, capsys, monkeypatch):
    from phi3tui.cli import main

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    models = tmp_path / "lm models"
    assert main(["export", "lmstudio", "-w", str(trained_ws), "--name", "lm", "--models-dir", str(models)]) == 2
    assert "run `phi3tui export gguf` first" in capsys.readouterr().err
    assert not models.exists()  # a refused step makes no folders

    assert main(["export", "all", "-w", str(trained_ws), "--name", "lm", "--no-verify"]) == 0
    assert not models.exists()  # run-all leaves LM Studio alone: it writes outside the workspace
    capsys.readouterr()
    gguf = trained_ws / "exports" / "lm" / "lm-f16.gguf"
    assert main(["export", "lmstudio", "-w", str(trained_ws), "--name", "lm", "--models-dir", str(models)]) == 0
    placed = models / "phi3tui" / "lm" / "lm-f16.gguf"
    assert placed.read_bytes() == gguf.read_bytes()
    assert f"copied lm-f16.gguf to {placed}" in capsys.readouterr().out
    assert sorted(p.name for p in placed.parent.iterdir()) == ["lm-f16.gguf"]  # no temporary left beside it

    # It reads back as a GGUF: LM Studio gets a whole file.
    from phi3tui.core.export.verify import read_back

    assert read_back(placed).ok

    placed.write_bytes(b"an older export")
    assert main(["export", "lmstudio", "-w", str(trained_ws), "--name", "lm", "--models-dir", str(models)]) == 2
    assert "file exists; pass --force" in capsys.readouterr().err
    assert placed.read_bytes() == b"an older export"
    assert main(["export", "lmstudio", "-w", str(trained_ws), "--name", "lm", "--models-dir", str(models),
                 "--publisher", "Me", "--force"]) == 0
    assert (models / "me" / "lm" / "lm-f16.gguf").read_bytes() == gguf.read_bytes()


def test_the_models_folder_comes_from_the_environment_and_adapter_only_is_refused(trained_ws, tmp_path, monkeypatch):
    from phi3tui.core.export.job import ExportJob
    from phi3tui.core.export.lmstudio import MODELS_DIR_ENV, destination, models_dir

    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "env-models"))
    assert models_dir() == (tmp_path / "env-models").resolve()
    job = ExportJob.create(trained_ws, name="lm")
    assert destination(job) == (tmp_path / "env-models").resolve() / "phi3tui" / "lm" / "lm-f16.gguf"
    assert job.describe("lmstudio")[0].startswith("copy lm-f16.gguf to ")

    adapter_only = ExportJob.create(trained_ws, name="lm", use_adapter_in_ollama=True)
    with pytest.raises(ExportError, match="not a base GGUF plus a GGUF LoRA"):
        adapter_only.run("lmstudio")
    assert adapter_only.existing_outputs("lmstudio") == []


async def test_the_wizard_lists_lm_studio_with_its_plan(trained_ws, tmp_path, monkeypatch):
    from phi3tui.app import Phi3App
    from phi3tui.core.workspace import Workspace

    monkeypatch.setenv("LMSTUDIO_MODELS_DIR", str(tmp_path / "models"))
    app = Phi3App(Workspace(trained_ws), start_mode="export")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        steps = app.screen.query_one("#export-steps")
        assert list(steps.labels)[-1] == "lmstudio"
        assert "7 LM Studio" in str(steps.get_option("lmstudio").prompt)
        steps.highlighted = list(steps.labels).index("lmstudio")
        await pilot.pause(0.2)
        plan = str(app.screen.query_one("#export-plan").render())
        assert "LM Studio will:" in plan and f"phi3-{RUN_ID}-f16.gguf" in plan, plan
