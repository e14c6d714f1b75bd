"""Decoding on the CPU: mlx.core.fast.rope and rms_norm have no CPU kernel, so each call there is a graph
of ~30 (rope) and ~11 (rms_norm) small ops, about a third of a decode step's ops on a small model. Traced
once through mx.compile (as mlx-lm compiles swiglu and its samplers), the same ops run fused: the same
arithmetic, bit for bit (tests/test_chat.py checks the tokens against plain mlx-lm).

Only one-token steps take the compiled path: their shapes repeat every step, so each is traced once;
prompts (any length) keep the plain call. On a GPU the fast ops are single kernels already: nothing changes.
The first use on a machine builds the fused kernels with g++ (about a dozen, ~0.5 s each, cached by mlx
under $TMPDIR/mlx for later processes); without a compiler mlx runs the same ops unfused.

Heavy (imports mlx).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


@mx.compile
def _rope(x, offset, dims, traditional, base, scale):
    return mx.fast.rope(x, dims, traditional=traditional, base=base, scale=scale, offset=offset)


@mx.compile
def _rms_norm(x, weight, eps):
    return mx.fast.rms_norm(x, weight, eps)


class _DecodeRoPE(nn.RoPE):
    def __call__(self, x, offset=0):
        if x.ndim < 2 or x.shape[-2] != 1:
            return super().__call__(x, offset)
        # The offset goes in as an array: an int would be traced as a constant (a new trace every step).
        offset = offset if isinstance(offset, mx.array) else mx.array(offset)
        return _rope(x, offset, self.dims, self.traditional, self.base, self.scale)


class _DecodeRMSNorm(nn.RMSNorm):
    def __call__(self, x):
        if x.ndim < 2 or x.shape[-2] != 1:
            return super().__call__(x)
        return _rms_norm(x, self["weight"], self.eps)


_DECODE_CLASSES = {nn.RoPE: _DecodeRoPE, nn.RMSNorm: _DecodeRMSNorm}


def compile_cpu_decode(model: nn.Module) -> int:
    """On the CPU, make the model's RoPE and RMSNorm layers run one-token steps compiled; return how many.

    The layers keep their parameters, paths and attributes (only their class changes to a subclass), so
    weights, dtype casts and adapters work on them as before."""
    if mx.default_device() != mx.cpu:
        return 0
    changed = 0
    for _, module in model.named_modules():
        decode_class = _DECODE_CLASSES.get(type(module))
        if decode_class is not None:
            module.__class__ = decode_class
            changed += 1
    return changed
