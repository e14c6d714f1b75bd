"""The harness's "says what to do" check: it passes real instructions and fails messages that only state a fact."""

from __future__ import annotations

import pytest

from tests.reliability.conftest import says_what_to_do


@pytest.mark.parametrize("message", [
    "train:5: invalid JSON: Expecting value at column 2 (fix the line so it is one JSON object)",
    "lora_config.yaml:13: error: num_layers: is 40 but the model has 4 blocks (use 4 or -1 for all)",
    "lora_config.yaml:16: error: batch_size: is 'four'; it must be a whole number",
    "exports/mine/fused: folder is not empty; pass --force to replace it (or choose another output)",
    "ws/nope does not exist\nhint: run `phi3tui demo` to build a demo workspace",
    "model.safetensors is truncated (an incomplete download? re-download it)",
    "no run 'x' in ws/runs; run `phi3tui runs list` to see the ids",
])
def test_instructions_pass(message):
    assert says_what_to_do(message)


@pytest.mark.parametrize("message", [
    "run 20261201-203757-27f1 is finished; only a stopped, failed or diverged run can be resumed",
    "no run 'x' in ws/runs; `phi3tui runs list` shows the ids",
    "train: train.jsonl is empty",
    "messages[1] has no 'content'",
    "config.json is missing",
    "the run failed: the checkpoint is unusable, reset by the user",  # run/use/set inside other words or as nouns
    "the settings were used; a preset is in use",
])
def test_facts_alone_fail(message):
    assert not says_what_to_do(message)
