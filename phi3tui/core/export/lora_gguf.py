"""An MLX LoRA adapter alone as a GGUF LoRA: Ollama's ADAPTER (or llama.cpp's --lora) over a base GGUF.

MLX adds scale * (x @ lora_a) @ lora_b with lora_a (in, r) and lora_b (r, out); llama.cpp adds
(alpha / r) * B(A x) with A stored as (r, in) and B as (out, r). So A = lora_a.T, B = lora_b.T and
alpha = scale * rank. DoRA magnitudes and full fine-tunes cannot be expressed: fuse those instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phi3tui.core.export import ExportError, Progress, no_progress
from phi3tui.core.adapters import AdapterRef, kind_of
from phi3tui.core.export.paths import adapter_config
from phi3tui.core.files import atomic_output_file

LORA_TYPES = ("f32", "f16")
ADAPTER_NAME = re.compile(r"^(?P<module>.+)\.(?P<part>lora_a|lora_b)$")


@dataclass
class LoraResult:
    path: Path
    outtype: str
    alpha: float
    rank: int
    tensors: list[tuple[str, tuple[int, ...], str]]
    size: int

    def summary(self) -> str:
        return f"{self.path} (LoRA {self.outtype}, rank {self.rank}, alpha {self.alpha:g}, {len(self.tensors)} tensors, {self.size / 1e6:.2f} MB)"


def write_lora_gguf(
    adapter: AdapterRef, outfile: Path, outtype: str = "f16", name: str | None = None,
    force: bool = False, progress: Progress = no_progress,
) -> LoraResult:
    import gguf
    import mlx.core as mx

    outfile = Path(outfile)
    if outtype not in LORA_TYPES:
        raise ExportError(f"LoRA output type {outtype!r} is not one of {', '.join(LORA_TYPES)}")
    config = adapter_config(adapter)
    where = adapter.config_path
    kind = kind_of(config)
    if kind != "lora":
        raise ExportError(
            f"{where}: fine_tune_type is {kind!r}; a GGUF LoRA holds plain LoRA only (DoRA magnitudes and full "
            "fine-tunes cannot be expressed): export the fused model instead"
        )
    params = config.get("lora_parameters") or {}
    rank = int(params.get("rank", 8))
    scale = float(params.get("scale", 20.0))
    weights = mx.load(str(adapter.weights))
    if not weights:
        raise ExportError(f"{adapter.weights} holds no tensors")
    n_layers = 1 + max((int(m.group(1)) for k in weights if (m := re.search(r"layers\.(\d+)\.", k))), default=0)
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.PHI3, n_layers)
    qtype = gguf.GGMLQuantizationType.F32 if outtype == "f32" else gguf.GGMLQuantizationType.F16
    np_type = np.float32 if outtype == "f32" else np.float16
    tensors: list[tuple[str, np.ndarray]] = []
    pairs: dict[str, set] = {}
    for key in sorted(weights):
        m = ADAPTER_NAME.match(key)
        if not m:
            raise ExportError(f"{adapter.weights}: tensor {key} is not a LoRA matrix (lora_a / lora_b)")
        base_name = name_map.get_name(m["module"] + ".weight", try_suffixes=(".weight",))
        if base_name is None:
            raise ExportError(f"{adapter.weights}: {m['module']} has no phi3 GGUF tensor; is this a Phi-3 adapter?")
        matrix = np.array(weights[key].astype(mx.float32)).T  # to llama.cpp's (r, in) / (out, r)
        tensors.append((f"{base_name}.{m['part']}", np.ascontiguousarray(matrix.astype(np_type))))
        pairs.setdefault(base_name, set()).add(m["part"])
    for base_name, parts in pairs.items():
        if parts != {"lora_a", "lora_b"}:
            raise ExportError(f"{adapter.weights}: {base_name} has only {', '.join(sorted(parts))}")
    with atomic_output_file(outfile, force=force, error=ExportError) as tmp:
        writer = gguf.GGUFWriter(tmp, "phi3")
        try:
            writer.add_type(gguf.GGUFType.ADAPTER)
            writer.add_name(name or f"Phi-3 LoRA {adapter.run_id or adapter.adapter_dir.name}")
            writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
            writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, scale * rank)
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
            for tname, data in tensors:
                writer.add_tensor_info(tname, data.shape, data.dtype, data.nbytes, raw_dtype=qtype)
            writer.write_header_to_file(tmp)
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for i, (_, data) in enumerate(tensors):
                writer.write_tensor_data(data)
                progress(i + 1, len(tensors), f"writing {outfile.name}")
        finally:
            writer.close()
    return LoraResult(outfile, outtype, scale * rank, rank, [(n, tuple(d.shape), qtype.name) for n, d in tensors], outfile.stat().st_size)
