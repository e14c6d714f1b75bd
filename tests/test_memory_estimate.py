"""The memory check sizes activations from the rows a run will really batch (issue 23): mlx-lm pads each batch
to its longest record, so Phi-3-mini with mlx-lm's defaults (batch 4, max_seq_length 2048, 16 blocks) on
TruthfulQA-length records fits a 16 GB Mac; a config that cannot fit is still refused. The Mac is faked through
PHI3TUI_WORKING_SET_GB (what Metal's recommended working set would be). The records are counted with Phi-3's own
vocabulary (llama.cpp's reference copy in shared/data): the demo model's small vocabulary makes TruthfulQA's
longest batched record 154 tokens where Phi-3's makes it 84, which alone moved the estimate from 10.9 GB to 9.6 GB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phi3tui.core import models, runs
from phi3tui.core.config import review_config
from phi3tui.core.demo import write_tokenizer_files
from phi3tui.core.machine import WORKING_SET_ENV, memory_budget
from phi3tui.core.workspace import Workspace
from tests.test_config import PHI3_MINI_CONFIG
from tests.test_gguf_tokenizer import phi3_sentencepiece

# Metal's recommended working set on a 16 GB Mac: 11,453,251,584 bytes (10.67 GiB, two thirds of the RAM), as
# mx.device_info() reports it on an M1 with 16 GB.
MAC_16GB_WORKING_SET_GB = "11.453251584"
# The issue's "~10.7 GB" for that Mac, taken as decimal GB: 0.75 GB less, the stricter test.
ISSUE_16GB_WORKING_SET_GB = "10.7"


@pytest.fixture
def truthfulqa_workspace(tmp_path, shared_data) -> Path:
    """Phi-3-mini's real config.json (no weights: the check builds the structure from it), Phi-3's tokenizer
    rebuilt from llama.cpp's reference vocabulary (its 32,000 pieces and scores, then the 11 added tokens), and
    TruthfulQA in the tutorial's text format, imported by phi3tui."""
    from phi3tui.core.data.importers import ImportOptions, import_any

    root = tmp_path / "ws"
    model = root / "phi3-mini"
    model.mkdir(parents=True)
    phi3_sentencepiece(shared_data, model / "tokenizer.model")
    ids = write_tokenizer_files(model)
    assert ids["<|endoftext|>"] == 32000 and ids["<|user|>"] == 32010  # Phi-3's own ids
    (model / "config.json").write_text(json.dumps(PHI3_MINI_CONFIG))
    import_any(shared_data / "TruthfulQA.csv", root / "data", ImportOptions(train=708, valid=51, test=51))
    return root


def memory_finding(review):
    (finding,) = [f for f in review.findings if f.field == "memory"]
    return finding


# mlx-lm's own default training keys: nothing but the model, the data and train.
DEFAULTS_ONLY = "model: phi3-mini\ndata: data\ntrain: true\n"


@pytest.mark.parametrize("working_set", [MAC_16GB_WORKING_SET_GB, ISSUE_16GB_WORKING_SET_GB])
def test_phi3_mini_with_mlx_lm_defaults_on_truthfulqa_fits_a_16gb_mac(truthfulqa_workspace, monkeypatch, working_set):
    monkeypatch.setenv(WORKING_SET_ENV, working_set)
    review = review_config(DEFAULTS_ONLY, truthfulqa_workspace)
    finding = memory_finding(review)
    estimate = review.memory
    assert estimate.from_data and estimate.machine == int(float(working_set) * 1e9)
    # Rows as mlx-lm pads them (the batch's longest, to a multiple of 32), far below max_seq_length 2048:
    # TruthfulQA's longest training record is 84 tokens in Phi-3's vocabulary (with the end-of-text mlx-lm adds).
    longest = models.longest_batched(review.data.lengths["train"], 4)
    assert 70 < longest < 100 and estimate.sequence == models.batch_sequence_length(longest, 2048) == 96
    assert estimate.total < estimate.machine, finding
    # Not refused; said that a record as long as max_seq_length would not fit.
    assert finding.level == "warning" and "max_seq_length (2048)" in finding.message, finding
    assert estimate.total_max > estimate.machine
    assert not [f for f in review.errors if f.field != "model"], review.errors  # "model": no weights here


def test_a_config_that_cannot_fit_the_real_data_is_still_refused(truthfulqa_workspace, monkeypatch):
    monkeypatch.setenv(WORKING_SET_ENV, MAC_16GB_WORKING_SET_GB)
    review = review_config(DEFAULTS_ONLY + "batch_size: 256\n", truthfulqa_workspace)
    finding = memory_finding(review)
    assert finding.level == "error" and "above what MLX can use" in finding.message, finding
    assert review.memory.from_data and review.memory.total > review.memory.machine
    # The weights alone do not fit an 8 GB Mac's working set (~5.3 GB): refused whatever the data.
    monkeypatch.setenv(WORKING_SET_ENV, "5.3")
    assert memory_finding(review_config(DEFAULTS_ONLY, truthfulqa_workspace)).level == "error"


def test_memory_already_in_use_is_counted(truthfulqa_workspace, monkeypatch):
    monkeypatch.setenv(WORKING_SET_ENV, MAC_16GB_WORKING_SET_GB)
    free = review_config(DEFAULTS_ONLY, truthfulqa_workspace)
    room = free.memory.machine - free.memory.total
    chat_model = room + (1 << 30)  # a loaded chat model that leaves less than the run needs
    review = review_config(DEFAULTS_ONLY, truthfulqa_workspace, in_use=chat_model)
    finding = memory_finding(review)
    assert review.memory.total == free.memory.total + chat_model
    assert finding.level == "error" and "already in use" in finding.message and "unload" in finding.hint


def test_without_token_lengths_max_seq_length_sizes_the_rows(truthfulqa_workspace, monkeypatch):
    # No tokenizer to count with: the estimate cannot know the rows and stays with max_seq_length.
    monkeypatch.setenv(WORKING_SET_ENV, MAC_16GB_WORKING_SET_GB)
    for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"):
        (truthfulqa_workspace / "phi3-mini" / name).unlink(missing_ok=True)
    review = review_config(DEFAULTS_ONLY, truthfulqa_workspace)
    assert not review.memory.from_data and review.memory.sequence == 2047
    assert memory_finding(review).level == "error"


def test_working_set_env_fakes_the_budget(monkeypatch):
    monkeypatch.setenv(WORKING_SET_ENV, "10.7")
    budget = memory_budget()
    assert budget.bytes == int(10.7e9) and WORKING_SET_ENV in budget.source
    monkeypatch.setenv(WORKING_SET_ENV, "lots")
    with pytest.raises(ValueError, match=WORKING_SET_ENV):
        memory_budget()


@pytest.mark.parametrize("lengths, batch_size, max_seq", [
    ([5, 40, 33, 100, 7, 64, 65, 12, 300], 4, 2048),  # the longest record is never batched (9 % 4 = 1)
    ([5, 40, 33, 100, 7, 64, 65, 12], 4, 2048),
    ([10, 20, 30, 500, 500, 31, 32, 33], 2, 256),  # capped by max_seq_length
    ([31, 32, 33, 1], 1, 65536),
])
def test_rows_are_sized_as_mlx_lm_batches_them(lengths, batch_size, max_seq):
    from collections import Counter

    from mlx_lm.tuner.trainer import iterate_batches

    dataset = [(list(range(n)), 0) for n in lengths]
    widths = [batch.shape[1] - 1 for batch, _ in iterate_batches(dataset, batch_size, max_seq)]  # inputs: all but the last
    longest = models.longest_batched(Counter(lengths), batch_size)
    assert models.batch_sequence_length(longest, max_seq) == max(widths)


def test_a_run_with_max_seq_length_65536_on_short_records_starts_and_finishes(demo_workspace):
    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=dict(iters=2, max_seq_length=65536, steps_per_report=1, steps_per_eval=100,
                                                save_every=100, val_batches=1), keep_awake="off")
    info = runs.wait_for_run(run_dir, timeout=300)
    assert info["state"] == "finished", info


def test_figures_read_back_in_the_units_they_were_given(monkeypatch):
    """A working set faked as 10.7 GB is said as 10.7 GB in the check's messages (decimal units everywhere)."""
    from phi3tui.core.models import human_bytes

    monkeypatch.setenv(WORKING_SET_ENV, "10.7")
    assert human_bytes(memory_budget().bytes) == "10.7 GB"
    assert human_bytes(7_640_000_000) == "7.6 GB" and human_bytes(1_500_000) == "1.5 MB"
