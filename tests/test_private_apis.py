"""What phi3tui relies on in the private parts of mlx-lm and Textual (core/mlx_lm_private.py,
phi3tui/textual_private.py): an upgrade that changes one of them fails here, by name, first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from textual.app import App
from textual.screen import Screen
from textual.theme import Theme
from textual.widgets import Static

from phi3tui.core.mlx_lm_private import REPORTER_MODULES, lora_parser_actions, model_classes
from phi3tui.textual_private import app_keymap, invalidate_css


# -- mlx-lm ---------------------------------------------------------------------------------------
def test_model_classes_build_the_model_mlx_lm_loads(demo_model):
    from mlx_lm.models import phi3

    config = json.loads((demo_model / "config.json").read_text())
    model_class, args_class = model_classes(config)
    assert (model_class, args_class) == (phi3.Model, phi3.ModelArgs)
    model = model_class(args_class.from_dict(config))
    assert len(model.layers) == config["num_hidden_layers"]


def test_model_classes_follow_mlx_lm_remapping_and_refuse_unknown_types():
    from mlx_lm.models import llama

    # mlx-lm maps some model_types onto another module (mistral is built as llama).
    assert model_classes({"model_type": "mistral"})[0] is llama.Model
    with pytest.raises(ValueError, match="not supported"):
        model_classes({"model_type": "no-such-architecture"})


def test_lora_parser_actions_are_the_options_of_mlx_lm_lora():
    actions = {a.dest: a for a in lora_parser_actions()}
    for dest in ("model", "num_layers", "iters", "learning_rate", "fine_tune_type", "adapter_path"):
        assert dest in actions, dest
        assert actions[dest].help, dest
    assert actions["learning_rate"].type is float
    assert set(actions["fine_tune_type"].choices) >= {"lora", "dora", "full"}


def test_the_tuner_loads_without_the_reporting_packages_until_a_run_reports():
    from phi3tui.core.config import REPORTERS

    assert set(REPORTER_MODULES) == {module for module, _extra in REPORTERS.values()}
    # A fresh interpreter: this one may have imported wandb already. Holds with wandb installed or not.
    code = textwrap.dedent("""
        import importlib.util, json, sys
        from phi3tui.core.mlx_lm_private import lora_parser_actions, reporting_callbacks
        lora_parser_actions()
        from mlx_lm.tuner import callbacks
        out = {"loaded": sorted(m for m in ("wandb", "swanlab") if m in sys.modules),
               "globals": [callbacks.wandb is None, callbacks.swanlab is None],
               "installed": importlib.util.find_spec("wandb") is not None}
        support = reporting_callbacks(["wandb"])
        out["bound"] = callbacks.wandb is sys.modules.get("wandb", "absent")
        out["swanlab_still_none"] = callbacks.swanlab is None
        if callbacks.wandb is None:  # not installed: the callback refuses before it writes anything
            try:
                support["wandb"](project_name=None, log_dir=".", config={})
            except ImportError as exc:
                out["refused"] = str(exc)
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == [] and out["globals"] == [True, True]  # read the schema, no reporter imported
    assert out["swanlab_still_none"]  # only the named reporter is brought in
    if out["installed"]:
        assert out["bound"], "mlx-lm's callbacks module does not see the wandb the run reports to"
    else:
        assert "wandb is not installed" in out.get("refused", "")  # mlx-lm's own refusal, as without phi3tui


def _instrumented_train(demo_model, tmp_path, iters: int, stop_after: int | None = None, steps_per_report: int = 1):
    """mlx-lm's train() on the demo model with a generator and a callback that log, in order, each batch pulled
    and each report made. Returns (events, the generator's keyword arguments, the loss's argument counts)."""
    import mlx.core as mx
    import mlx.optimizers as optim
    import numpy as np
    from mlx_lm.tuner.trainer import TrainingArgs, TrainingCallback, default_loss, train
    from mlx_lm.utils import load

    from phi3tui.core.models import apply_fine_tune

    model, _ = load(str(demo_model))
    apply_fine_tune(model, "lora", 1, {"rank": 2, "scale": 1.0, "dropout": 0.0})
    events, calls, loss_args = [], [], []
    vocab = json.loads((demo_model / "config.json").read_text())["vocab_size"]

    def batches(**kwargs):
        calls.append(sorted(kwargs))
        rng = np.random.default_rng(0)
        for i in range(1, 10_000):
            if stop_after is not None and i > stop_after:
                events.append(("returned", i - 1))
                return
            events.append(("pull", i))
            tokens = mx.array(rng.integers(0, vocab, size=(2, 9)), dtype=mx.int32)
            yield tokens, mx.array([[1, 8], [1, 8]], dtype=mx.int32)
        events.append(("drained", None))

    def loss(model, *batch):
        loss_args.append(len(batch))  # at tracing only: the step is compiled
        return default_loss(model, *batch)

    class Log(TrainingCallback):
        def on_train_loss_report(self, info):
            events.append(("report", info["iteration"]))
            assert set(info) >= {"iteration", "train_loss", "learning_rate", "iterations_per_second",
                                 "tokens_per_second", "trained_tokens", "peak_memory"}

        def on_val_loss_report(self, info):
            events.append(("val", info["iteration"]))

    tmp_path.mkdir(parents=True)
    adapter_file = tmp_path / "adapters.safetensors"
    train(model=model, optimizer=optim.Adam(learning_rate=1e-3), train_dataset=[None] * 4, val_dataset=None,
          args=TrainingArgs(batch_size=2, iters=iters, steps_per_report=steps_per_report, steps_per_eval=1,
                            steps_per_save=iters + 1, adapter_file=adapter_file, max_seq_length=16),
          loss=loss, iterate_batches=lambda **kwargs: batches(**kwargs), training_callback=Log())
    saved = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".safetensors")
    return events, calls, loss_args, saved


def test_train_loop_contract(demo_model, tmp_path):
    """mlx_lm_private.TRAIN_LOOP_CONTRACT: the order of mlx-lm's train() loop that the runner's iterate_batches
    generator relies on to validate, checkpoint, stop and resume between two steps."""
    from phi3tui.core.mlx_lm_private import TRAIN_LOOP_CONTRACT

    assert len(TRAIN_LOOP_CONTRACT) == 8
    events, calls, loss_args, saved = _instrumented_train(demo_model, tmp_path / "full", iters=3)
    # 1: called once, with these keywords. 7: loss(model, *batch).
    assert calls == [["batch_size", "comm_group", "dataset", "loop", "max_seq_length"]] and set(loss_args) == {2}
    # 2, 3, 5: each batch pulled after the previous step's report, none after the last step, no validation.
    assert events == [("pull", 1), ("report", 1), ("pull", 2), ("report", 2), ("pull", 3), ("report", 3)]
    assert saved == ["adapters.safetensors"]  # 8: no numbered checkpoint of mlx-lm's own
    # 4: a generator that returns ends the run without an error; 6: reports on the grid and at the end.
    events, _, _, _ = _instrumented_train(demo_model, tmp_path / "stopped", iters=10, stop_after=4, steps_per_report=3)
    assert events == [("pull", 1), ("pull", 2), ("pull", 3), ("report", 3), ("pull", 4), ("returned", 4)]


def test_masked_batches_hold_the_records_mlx_lms_batches_hold(demo_model):
    """mlx_lm_private.sort_key_of: the runner's masked batches (assistant_turns: all) sort, cut, shuffle and pad
    as mlx-lm's iterate_batches does, so the same seed gives the same records in each batch."""
    import numpy as np
    from mlx_lm.tuner.datasets import CacheDataset, ChatDataset
    from mlx_lm.tuner.trainer import iterate_batches

    from phi3tui.core.data import DataSettings, load_tokenizer
    from phi3tui.core.runs.tasks import TurnsDataset, iterate_masked_batches

    tokenizer = load_tokenizer(demo_model)
    records = [{"messages": [{"role": "user", "content": "q " * n}, {"role": "assistant", "content": "a " * (9 - n)}],
                **({"tools": []} if n % 3 == 0 else {})} for n in range(1, 9)]  # records of 1 and 2 keys
    ours = CacheDataset(TurnsDataset(ChatDataset(records, tokenizer), tokenizer, DataSettings(assistant_turns="all")))
    theirs = CacheDataset(ChatDataset(records, tokenizer))
    mine = [np.array(t) for t, _ in iterate_masked_batches(ours, 2, 64, seed=3)]
    mlx = [np.array(t) for t, _ in iterate_batches(theirs, 2, 64, seed=3)]
    assert len(mine) == len(mlx) == 4 and all(a.shape == b.shape and (a == b).all() for a, b in zip(mine, mlx))


@pytest.mark.parametrize("model_type, tied", [("phi3", False), ("phi3", True), ("llama", True)])
def test_logits_from_applies_the_head_to_the_scored_positions_only(model_type, tied):
    """mlx_lm_private.body_and_head / logits_from: the Phi-3 family's (and Llama's) model(x) is its output head
    (lm_head, or the tied embedding's as_linear) over its body's hidden states, so GRPO's scores can apply the
    head to the scored positions alone and give model(x)[:, start:]."""
    import mlx.core as mx

    from phi3tui.core.mlx_lm_private import body_and_head, logits_from

    config = {"model_type": model_type, "hidden_size": 32, "num_hidden_layers": 2, "intermediate_size": 64,
              "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "vocab_size": 97,
              "tie_word_embeddings": tied}
    model_class, args_class = model_classes(config)
    mx.random.seed(5)
    model = model_class(args_class.from_dict(config))
    inputs = mx.random.randint(0, 97, (3, 20))
    whole = model(inputs)
    parts = body_and_head(model)
    assert parts is not None, f"{model_type} (tied {tied}) must be recognised"
    body, head = parts
    assert mx.array_equal(head(body(inputs)), whole).item()
    scored = logits_from(model, inputs, 13)
    assert scored.shape == (3, 7, 97) and mx.allclose(scored, whole[:, 13:], atol=1e-5).item()


def test_logits_from_calls_a_model_it_does_not_know_whole():
    import mlx.core as mx
    import mlx.nn as nn

    from phi3tui.core.mlx_lm_private import body_and_head, logits_from

    class Doubled(nn.Module):  # a body (.model) and a head (.lm_head), but a __call__ that is not head(body(x))
        def __init__(self):
            super().__init__()
            self.model = nn.Embedding(11, 8)
            self.lm_head = nn.Linear(8, 11)

        def __call__(self, inputs):
            return 2 * self.lm_head(self.model(inputs))

    model = Doubled()
    inputs = mx.array([[1, 2, 3, 4]])
    assert body_and_head(model) is None
    assert mx.array_equal(logits_from(model, inputs, 1), model(inputs)[:, 1:]).item()


# -- Textual --------------------------------------------------------------------------------------
class Coloured(Screen):
    CSS = "Static { background: $primary; }"

    def compose(self):
        yield Static("x")


class TwoModes(App):
    MODES = {"a": Coloured, "b": Coloured}


def theme(primary: str) -> Theme:
    return Theme(name="pinned", primary=primary, dark=True)


async def test_invalidate_css_restyles_the_screens_of_other_modes():
    # Re-registering a theme under the same name does not run Textual's theme watcher; phi3tui's
    # settings reload calls invalidate_css so that every mode's screen takes the new colours when shown.
    app = TwoModes()
    async with app.run_test() as pilot:
        app.register_theme(theme("#ff0000"))
        app.theme = "pinned"
        await app.switch_mode("a")
        await pilot.pause()
        await app.switch_mode("b")
        await pilot.pause()
        app.register_theme(theme("#0000ff"))
        await pilot.pause()
        assert app.screen.query_one(Static).styles.background.hex != "#0000FF"  # nothing restyles by itself
        invalidate_css(app)
        await app.switch_mode("a")
        await pilot.pause()
        assert app.screen.query_one(Static).styles.background.hex == "#0000FF"


async def test_app_keymap_is_the_keymap_as_textual_matches_it():
    app = TwoModes()
    async with app.run_test():
        app.set_keymap({"x.help": "?,a", "x.quit": "ctrl+q"})
        assert app_keymap(app) == {"x.help": "question_mark,a", "x.quit": "ctrl+q"}


# -- first paint (issue 16) -----------------------------------------------------------------------
from textual.widgets import Footer  # noqa: E402

from phi3tui.textual_private import FooterKey, NoHiddenFirstFrame, footer_ready, paint_now  # noqa: E402


class Frames(App):
    """Records every renderable Textual hands to the terminal, and whether it held updates back then."""

    BINDINGS = [("x", "bell", "Ring")]

    def __init__(self, screen_class=None, **kwargs):
        super().__init__(**kwargs)
        self.frames: list[tuple[str, bool]] = []
        self.screen_class = screen_class

    def get_default_screen(self):
        return self.screen_class() if self.screen_class else super().get_default_screen()

    def compose(self):
        yield Static("body")
        yield Footer()

    def _display(self, screen, renderable):
        if renderable is not None:
            self.frames.append((type(renderable).__name__, bool(self._batch_count)))
        return super()._display(screen, renderable)


async def test_footer_keys_are_footer_key_and_footer_ready_is_set_quietly():
    app = Frames()
    async with app.run_test() as pilot:
        await pilot.pause()
        footer = app.screen.query_one(Footer)
        assert [k.description for k in footer.query(FooterKey)] == ["Ring", "palette"]
        # Footer composes its keys only once _bindings_ready is set; set_reactive sets it without a recompose.
        footer.set_reactive(Footer._bindings_ready, False)
        footer_ready(footer)
        assert footer._bindings_ready is True
        assert not footer._recompose_required


async def test_paint_now_draws_the_whole_screen_at_once():
    app = Frames()
    async with app.run_test() as pilot:
        await pilot.pause()
        app.frames.clear()
        paint_now(app.screen)
        assert app.frames == []  # nothing to draw: nothing drawn
        app.screen.refresh()
        paint_now(app.screen)
        assert app.frames == [("LayoutUpdate", False)]  # the repaint asked for, there and then (not at a timer tick)


class Held(NoHiddenFirstFrame, Screen):
    def compose(self):
        yield Static("held")


class HeldApp(Frames):
    painted = False


async def test_no_hidden_first_frame_renders_nothing_while_the_app_starts():
    plain, held = Frames(), HeldApp(Held)
    for app in (plain, held):
        async with app.run_test() as pilot:
            await pilot.pause()
            with app.batch_update():  # as while the app starts: Textual drops what is rendered now
                await app.screen.mount(Static("new"))
                app.screen._refresh_layout(app.size)  # renders on its next callback, inside the batch
                await pilot.pause()
            if app is held:
                assert not [frame for frame in app.frames if frame[1]]  # nothing rendered to be dropped
                app.frames.clear()
                app.painted = True
                paint_now(app.screen)
                assert ("LayoutUpdate", False) in app.frames  # what was skipped is drawn, with the whole screen
    assert [frame for frame in plain.frames if frame[1]]  # Textual's own way: a frame rendered, and dropped
