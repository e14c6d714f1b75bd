"""Runs a GGUF in llama.cpp (llama-cpp-python) in its own process: a bad file can abort the process.

`python -m phi3tui.core.export.llama_worker REQUEST.json` reads
{"model", "lora" (or null), "prompts": [[ids]], "max_tokens", "n_ctx", "out"} and writes to `out` an
.npz with, per prompt i, `tokens_i` (greedy ids) and `logits_i` (the prompt positions' logits).
With {"mode": "tokenize", "model", "texts", "out"} it loads only the vocabulary and writes to `out` a JSON
list: each text's ids, special tokens parsed and BOS/EOS added as the GGUF's add_bos/add_eos say.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def run(request: dict) -> None:
    from llama_cpp import Llama

    n_ctx = int(request["n_ctx"])
    kwargs = dict(
        model_path=request["model"], n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True,
        n_threads=int(request.get("threads") or 2), type_k=0, type_v=0, verbose=False,  # F32 KV cache: exact comparisons
        n_gpu_layers=0,  # on the CPU: the same check means the same on a Mac, where llama-cpp-python builds with Metal
    )
    if request.get("lora"):
        kwargs.update(lora_path=request["lora"], lora_scale=1.0)
    llm = Llama(**kwargs)
    arrays = {}
    try:
        for i, ids in enumerate(request["prompts"]):
            llm.reset()
            llm.eval(ids)
            arrays[f"logits_{i}"] = np.array(llm.scores[: len(ids)], dtype=np.float32)
            tokens = []
            for _ in range(int(request["max_tokens"])):
                token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
                tokens.append(token)
                llm.eval([token])
            arrays[f"tokens_{i}"] = np.array(tokens, dtype=np.int64)
    finally:
        llm.close()
    np.savez(request["out"], **arrays)


def tokenize(request: dict) -> None:
    from llama_cpp import Llama

    llm = Llama(model_path=request["model"], vocab_only=True, n_gpu_layers=0, verbose=False)
    try:
        ids = [llm.tokenize(t.encode("utf-8"), add_bos=True, special=True) for t in request["texts"]]
    finally:
        llm.close()
    with open(request["out"], "w", encoding="utf-8") as handle:
        json.dump(ids, handle)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        req = json.load(handle)
    tokenize(req) if req.get("mode") == "tokenize" else run(req)
