"""The near-tie rule of verify: llama.cpp may choose another greedy token only where MLX's two best logits were within
NEAR_TIE_EPS, and the check says where and by how much. Real MLX gaps, a real llama.cpp run of the demo GGUF."""

from __future__ import annotations

import dataclasses

import pytest
from test_export_fixtures import llama_cpp_or_skip

from phi3tui.core.export import verify
from phi3tui.core.export.gguf import write_gguf


@pytest.fixture(scope="module")
def agreement(demo_template, tmp_path_factory):
    llama_cpp_or_skip()
    model = demo_template / "model"
    path = write_gguf(model, tmp_path_factory.mktemp("near-tie") / "m.gguf", "f16").path
    return verify.verify_gguf(model, path, "f16", ["Why is the sky blue?"], 6)


def with_other_token(row, step: int):
    """The row as if llama.cpp had picked another token at `step` and continued its own way."""
    other = [t + 1 for t in row.llama_tokens]
    return dataclasses.replace(row, llama_tokens=row.llama_tokens[:step] + other[step:])


def test_mlx_gaps_are_measured_at_each_greedy_step(agreement):
    (row,) = agreement.rows
    assert row.same_tokens and agreement.ok
    assert len(row.mlx_gaps) == len(row.mlx_tokens) == 6 and all(g >= 0 for g in row.mlx_gaps)
    assert len(set(row.mlx_gaps)) > 1  # measured, not a constant


def test_a_different_token_passes_only_within_epsilon_and_is_reported(agreement, monkeypatch):
    (row,) = agreement.rows
    step = 2
    gap = row.mlx_gaps[step]
    changed = with_other_token(row, step)
    monkeypatch.setattr(verify, "NEAR_TIE_EPS", gap + 1e-6)
    allowed = dataclasses.replace(agreement, rows=[changed])
    assert changed.divergence == (step, row.mlx_tokens[step], row.mlx_tokens[step] + 1, gap)
    assert allowed.ok and f"step {step}" in allowed.summary() and f"{gap:.4f} apart" in allowed.summary()
    assert "allowed" in allowed.summary()
    monkeypatch.setattr(verify, "NEAR_TIE_EPS", gap - 1e-6)
    refused = dataclasses.replace(agreement, rows=[changed])
    assert not refused.ok and "not a near tie" in refused.summary() and "DISAGREES" in refused.summary()


def test_missing_tokens_are_never_a_near_tie(agreement, monkeypatch):
    (row,) = agreement.rows
    monkeypatch.setattr(verify, "NEAR_TIE_EPS", 1e9)
    short = dataclasses.replace(row, llama_tokens=row.llama_tokens[:3])
    assert not dataclasses.replace(agreement, rows=[short]).ok
