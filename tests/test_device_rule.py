"""One device rule (issue 23): MLX's default device is the whole process's, so no code but the model worker may
switch it. Background work (the config check, a run's start, the model list) builds structures lazily and needs
no stream. Linux has only the CPU, so a switch cannot be seen in the device itself: every entry point that
switches (mx.stream, mx.set_default_device, mx.set_default_stream) is wrapped by a recorder that still calls
MLX's own, and the test fails if a thread other than the model worker entered one."""

from __future__ import annotations

import threading

import pytest

from phi3tui.core.mlx_thread import MODEL_THREAD_NAME

DEMO = "model: model\ndata: data\ntrain: true\nnum_layers: -1\nbatch_size: 4\niters: 10\n" \
       "lora_parameters: {rank: 4, scale: 10.0, dropout: 0.0}\n"


@pytest.fixture
def device_switches(monkeypatch) -> list[tuple[str, str]]:
    """(thread name, switch) for every device or stream switch entered in this process from now on."""
    import mlx.core as mx

    entered: list[tuple[str, str]] = []
    for name in ("stream", "set_default_device", "set_default_stream"):
        original = getattr(mx, name)

        def recorder(*args, _original=original, _name=name, **kwargs):
            entered.append((threading.current_thread().name, _name))
            return _original(*args, **kwargs)

        monkeypatch.setattr(mx, name, recorder)
    return entered


def on_threads(*jobs) -> None:
    """Run every job at once, each on its own thread, released together; re-raise the first failure."""
    start = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def run(job):
        start.wait()
        try:
            job()
        except BaseException as exc:  # reported to the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,), name=f"background-{i}") for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    if errors:
        raise errors[0]


def test_background_checks_switch_no_device_and_the_model_worker_may(demo_workspace, device_switches):
    import mlx.core as mx

    from phi3tui.core import models
    from phi3tui.core.chat.session import ModelWorker
    from phi3tui.core.config import prepare_run_config, review_config

    reviews = {}
    known = models.known_models()[0]
    on_threads(
        lambda: reviews.update(check=review_config(DEMO, demo_workspace)),  # the Config screen's check
        lambda: reviews.update(start=prepare_run_config(demo_workspace / "lora_config.yaml", demo_workspace)),
        lambda: models.known_model_modules(known),  # the model list
        lambda: models.plan_lora(known.structure_config(), 2, {"rank": 8, "scale": 20.0, "dropout": 0.0}),
    )
    assert reviews["check"].memory is not None and reviews["start"][0]  # the checks did their work
    background = [entry for entry in device_switches if entry[0] != MODEL_THREAD_NAME]
    assert background == [], f"threads other than the model worker switched MLX's device: {background}"

    # The recorder does see a switch: the model worker enters its own stream.
    worker = ModelWorker()
    worker.submit(lambda w: mx.eval(mx.ones(2) * 2))
    worker.close()
    assert (MODEL_THREAD_NAME, "stream") in device_switches


def test_two_checks_at_once_leave_the_default_device_as_it_was(demo_workspace, device_switches):
    import mlx.core as mx

    from phi3tui.core.config import review_config

    before = mx.default_device()
    on_threads(*[lambda: review_config(DEMO, demo_workspace) for _ in range(3)])
    assert mx.default_device() == before
    assert device_switches == []


def test_the_model_worker_unloads_chats_model_for_a_run(demo_model):
    """Memory not booked twice: before a run starts here, Chat's model is let go (and loads again on the next chat)."""
    import mlx.core as mx

    from phi3tui.core.chat.session import ModelWorker

    worker = ModelWorker()
    try:
        assert worker.unload() == 0  # nothing loaded: nothing to do
        loaded = threading.Event()
        worker.submit(lambda w: (w.chat_model(str(demo_model)), loaded.set()))
        assert loaded.wait(120)
        before = mx.get_active_memory()
        freed = worker.unload()
        assert freed > 0 and worker._model is None
        assert mx.get_active_memory() <= before - freed
        again = threading.Event()
        worker.submit(lambda w: (w.chat_model(str(demo_model)), again.set()))
        assert again.wait(120) and worker._model is not None
    finally:
        worker.close()
