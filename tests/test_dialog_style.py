"""One look for every dialog and one spelling for the same thing: round borders and one-row inputs in every dialog,
checkpoints named `run X · latest` everywhere, presets' switches as on/off, LoRA spelled LoRA, the Config default
column whole at 120 columns, and round iteration ticks on the plot."""

from __future__ import annotations

import pytest

from phi3tui.app import Phi3App
from phi3tui.core.workspace import Workspace
from tests.test_config_screen import open_config


def dialogs(root):
    from phi3tui.core.chat import GenerationSettings
    from phi3tui.screens.chat.settings import ChatSettingsScreen
    from phi3tui.screens.export.settings import ExportSettingsScreen
    from phi3tui.screens.help import HelpScreen
    from phi3tui.screens.train.run_text import RunTextScreen
    from phi3tui.widgets.confirm_dialog import ConfirmDialog
    from phi3tui.widgets.import_form import ImportForm
    from phi3tui.widgets.picker import Picker

    return [
        ConfirmDialog("Replace it?"),
        ImportForm(str(root / "data")),
        Picker("Pick one", [("a", 1), ("b", 2)], from_path=str),
        ExportSettingsScreen({"name": "x"}),
        ChatSettingsScreen(GenerationSettings()),
        HelpScreen([("Keys", [("1", "Data")])]),
        RunTextScreen("log", "text"),
    ]


async def test_every_dialog_has_a_round_border_and_one_row_inputs(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for dialog in dialogs(demo_workspace):
            await app.push_screen(dialog)
            await pilot.pause()
            box = dialog.query_one(".dialog")
            name = type(dialog).__name__
            assert box.styles.border_top[0] == "round", name
            assert box.styles.background == app.screen.query_one(".dialog").styles.background
            for field in dialog.query("Input"):
                assert field.outer_size.height == 1, (name, field.id)
            dialog.dismiss(None)
            await pilot.pause()


async def test_presets_say_on_and_off(demo_workspace):
    from phi3tui.widgets.picker import Picker

    app = Phi3App(Workspace.open(demo_workspace), start_mode="config")
    async with app.run_test(size=(80, 24)) as pilot:
        await open_config(pilot, app)
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert isinstance(app.screen, Picker)
        labels = [str(label) for label, _ in app.screen.choices]
        assert any("train on" in label for label in labels) and any("test off" in label for label in labels)
        assert not any("True" in label or "False" in label for label in labels)


async def test_the_config_default_column_is_whole_at_120_columns(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace), start_mode="config")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_config(pilot, app)
        await pilot.pause()
        defaults = [label for label in screen.query(".default") if str(label.render()).strip()]
        data = next(label for label in defaults if "WikiSQL" in str(label.render()))
        assert data.content_region.width >= len("mlx-community/WikiSQL")


def test_checkpoints_and_adapter_kinds_are_named_one_way(trained_r1_template):
    from phi3tui.core.adapters import checkpoint_choices, every_checkpoint
    from phi3tui.core.export.job import ExportJob

    labels = [label for label, _ in checkpoint_choices(trained_r1_template)]
    assert labels == [ref.label for ref in every_checkpoint(trained_r1_template)]
    assert labels[0] == "run 20260101-0000-r1 · latest"
    plan = ExportJob.create(trained_r1_template).describe("fuse")
    assert any("with the LoRA adapter" in line for line in plan), plan


@pytest.mark.parametrize("high, ticks", [(99.5, [0, 50, 100]), (200, [0, 50, 100, 150, 200]), (20, [0, 5, 10, 15, 20]),
                                         (3, [0, 1, 2, 3]), (0, [0])])
def test_nice_ticks(high, ticks):
    from phi3tui.widgets.loss_plot import nice_ticks

    assert nice_ticks(high) == ticks


async def test_an_overlay_plot_has_round_ticks(demo_workspace):
    from phi3tui.widgets.loss_plot import Curve, LossPlot

    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        plot = LossPlot()
        await app.screen.mount(plot)
        xs = [i * 0.5 for i in range(200)]  # ends at 99.5: plotext's own ticks read 0.0 49.8 99.5
        plot.show_curves([Curve("a val", xs, [1.0 + x / 100 for x in xs], "train-loss")], "validation loss, overlaid")
        await pilot.pause()
        text = "\n".join(line.text for line in plot.render_lines(plot.region.reset_offset))
        assert "49.8" not in text and "99.5" not in text
        assert " 50 " in text and "100" in text
