"""One export, from choices to files: what the wizard and `phi3tui export` both drive.

Layout: <workspace>/exports/<name>/ holds fused/, <name>-<type>.gguf, <name>-lora-<type>.gguf,
<name>-base-<type>.gguf and the Modelfile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from phi3tui.core.adapters import AdapterRef
from phi3tui.core.export import ExportError, Progress, no_progress
from phi3tui.core.export.paths import (
    adapter_config,
    adapter_kind,
    base_model_of,
    default_export_name,
    dequantize_for_gguf,
    local_model_dir,
    read_json,
    refuse_gguf_architecture,
    resolve_adapter,
    safe_name,
)

STEPS = ("fuse", "gguf", "lora-gguf", "verify", "ollama")
# What the verify step established. Only AGREED earns the ✓: a read-back proves the file is well formed,
# not that llama.cpp runs it as MLX does.
VERIFY_AGREED = "agreed"
VERIFY_READ_BACK_ONLY = "read back; llama.cpp not installed"
VERIFY_NOTHING_TO_RUN = "read back; nothing llama.cpp could compare with MLX"
VERIFY_DISAGREES = "llama.cpp disagrees with MLX"
DEFAULT_PROMPTS = ("What happens if you crack your knuckles a lot?", "Why is the sky blue?")


@dataclass(frozen=True)
class FuseStep:
    """fuse()'s result plus what this job decided around it (a de-quantized base), said in its summary."""

    result: object  # fuse.FuseResult
    notes: tuple[str, ...] = ()

    def __getattr__(self, name):
        return getattr(self.result, name)  # fused_dir, dequantized, ... as fuse() reports them

    def summary(self) -> str:
        return self.result.summary() + "".join(f"; {note}" for note in self.notes)


@dataclass
class ExportJob:
    workspace_root: Path
    adapter: AdapterRef | None
    base_model: str | None
    name: str
    out_dir: Path
    outtype: str = "f16"
    lora_outtype: str = "f16"
    dequantize: bool = False  # de-quantize even when no GGUF follows (`export fuse --dequantize`)
    no_dequantize: bool = False  # refuse a quantized base instead of de-quantizing it (`--no-dequantize`)
    force: bool = False
    num_ctx: int | None = None
    quantize: str | None = None
    system: str | None = None
    tokenizer_model: Path | None = None
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    max_tokens: int = 8
    use_adapter_in_ollama: bool = False  # base GGUF + LoRA GGUF instead of the fused GGUF
    results: dict = field(default_factory=dict)
    base_problem: str = ""  # why no base model was found (said when a step needs it)

    @classmethod
    def create(
        cls, workspace_root: Path, adapter_path=None, run_id: str | None = None, checkpoint: int | None = None,
        model: str | None = None, name: str | None = None, out_dir: Path | None = None, need_adapter: bool = True, **options,
    ) -> "ExportJob":
        root = Path(workspace_root).resolve()
        adapter = None
        try:
            adapter = resolve_adapter(root, adapter_path, run_id, checkpoint)
        except ExportError:
            if need_adapter or adapter_path or run_id:
                raise
        base, problem = None, ""
        try:
            base = base_model_of(root, adapter, model)
        except ExportError as exc:
            if model:
                raise
            problem = str(exc)  # said when a step needs it
        name = safe_name(name) if name else default_export_name(adapter)
        out = Path(out_dir).expanduser().resolve() if out_dir else root / "exports" / name
        return cls(root, adapter, base, name, out, base_problem=problem, **options)

    # -- paths ----------------------------------------------------------------------------------------
    @property
    def fused_dir(self) -> Path:
        return self.out_dir / "fused"

    @property
    def gguf_path(self) -> Path:
        return self.out_dir / f"{self.name}-{self.outtype}.gguf"

    @property
    def lora_path(self) -> Path:
        return self.out_dir / f"{self.name}-lora-{self.lora_outtype}.gguf"

    @property
    def base_gguf_path(self) -> Path:
        return self.out_dir / f"{self.name}-base-{self.outtype}.gguf"

    @property
    def modelfile(self) -> Path:
        return self.out_dir / "Modelfile"

    def training_max_seq_length(self) -> int:
        if self.adapter is not None:
            return int(adapter_config(self.adapter).get("max_seq_length") or 0)
        record = self.fused_dir / "phi3tui-export.json"
        return int(read_json(record).get("max_seq_length") or 0) if record.is_file() else 0

    def require_adapter(self) -> AdapterRef:
        if self.adapter is None:
            raise ExportError(f"no adapter chosen and none found in {self.workspace_root}: train first or give --adapter-path")
        return self.adapter

    def require_base(self) -> str:
        if not self.base_model:
            raise ExportError(self.base_problem or "no base model: give --model")
        return self.base_model

    def rel(self, path) -> str:
        """A path as short as it can be said: relative to the workspace when inside it."""
        try:
            return str(Path(path).resolve().relative_to(self.workspace_root))
        except ValueError:
            return str(path)

    @property
    def adapter_label(self) -> str:
        if self.adapter is None:
            return "none"
        where = f"run {self.adapter.run_id}" if self.adapter.run_id else self.rel(self.adapter.adapter_dir)
        return f"{where}, {self.adapter.weights.name}"

    # -- what each step will do -----------------------------------------------------------------------
    def describe(self, step: str) -> list[str]:
        if step == "fuse":
            if self.adapter is None:
                return ["no adapter found: train first, or choose an adapter folder"]
            lines = [
                f"load {self.rel(self.base_model or '?')} with the {adapter_kind(self.adapter).upper()} adapter",
                "fuse each adapted layer into its base weights (mlx-lm)",
            ]
            if self.no_dequantize:
                lines.append("refuse an MLX-quantized base (--no-dequantize): the GGUF needs full weights")
            else:
                lines.append("de-quantize the weights if the base is MLX-quantized (the GGUF needs full weights)")
            return lines + [f"save to {self.rel(self.fused_dir)} with tokenizer.model and every tokenizer file"]
        if step == "gguf":
            return [
                f"read {self.rel(self.fused_dir)}: a Phi-3 with full (not MLX-quantized) weights",
                "vocabulary (SentencePiece with real scores, or byte-level BPE with merges), explicit add_bos, chat template",
                f"write {self.gguf_path.name} ({self.outtype}, llama.cpp phi3) tensor by tensor",
                "read it back: every tensor, shape, type and key",
            ]
        if step == "lora-gguf":
            if self.adapter is None:
                return ["no adapter found: train first, or choose an adapter folder"]
            quantized = ("refuse an MLX-quantized base (--no-dequantize)" if self.no_dequantize else
                         "an MLX-quantized base is de-quantized for its GGUF first (then the copy is removed)")
            return [
                f"write the adapter alone as {self.lora_path.name} ({self.lora_outtype}), alpha = scale x rank",
                f"and the base model as {self.base_gguf_path.name}, for Ollama's ADAPTER; {quantized}",
                "read both back",
            ]
        if step == "verify":
            return [
                "read each GGUF back with gguf's reader",
                f"in llama.cpp (with the verify extra): {len(self.prompts)} prompts, greedy tokens and logits vs MLX",
            ]
        if step == "ollama":
            src = f"{self.base_gguf_path.name} + ADAPTER {self.lora_path.name}" if self.use_adapter_in_ollama else self.gguf_path.name
            return [
                f"write {self.rel(self.modelfile)}: FROM {src}, TEMPLATE and stops from the model's chat template",
                f"lint it; `ollama create {self.name}` if Ollama runs, else show the commands",
            ]
        raise ValueError(step)

    def existing_outputs(self, step: str) -> list[Path]:
        """What running `step` would replace (the wizard asks first; the CLI needs --force)."""
        from phi3tui.core.files import is_nonempty_dir

        paths = {
            "fuse": [self.fused_dir],
            "gguf": [self.gguf_path],
            "lora-gguf": [self.lora_path, self.base_gguf_path],
            "ollama": [self.modelfile],
        }.get(step, [])
        return [p for p in paths if p.is_file() or is_nonempty_dir(p)]

    def effective_num_ctx(self) -> int:
        from phi3tui.core.export.ollama import DEFAULT_NUM_CTX

        return max(self.num_ctx or DEFAULT_NUM_CTX, self.training_max_seq_length())

    # -- the steps ------------------------------------------------------------------------------------
    def run_fuse(self, progress: Progress = no_progress):
        from phi3tui.core.export.fuse import fuse

        adapter = self.require_adapter()
        # The wizard, `export all` and the demo fuse for a GGUF: a quantized base is de-quantized, and said so.
        dequantize, note = dequantize_for_gguf(self.require_base(), refuse=self.no_dequantize)
        result = FuseStep(fuse(self.require_base(), adapter, self.fused_dir, dequantize or self.dequantize, self.force, progress),
                          (note,) if note else ())
        self.results["fuse"] = result
        return result

    def run_gguf(self, progress: Progress = no_progress):
        from phi3tui.core.export.gguf import write_gguf
        from phi3tui.core.export.verify import read_back

        if not (self.fused_dir / "config.json").is_file():
            raise ExportError(f"{self.fused_dir} has no fused model: run the fuse step first (`phi3tui export fuse`)")
        result = write_gguf(self.fused_dir, self.gguf_path, self.outtype, self.name, self.tokenizer_model, force=self.force, progress=progress)
        report = read_back(result.path, result)
        if not report.ok:
            raise ExportError(f"{result.path} does not read back: {'; '.join(report.problems)}")
        self.results["gguf"] = (result, report)
        return result, report

    def run_lora(self, progress: Progress = no_progress, with_base: bool = True):
        from phi3tui.core.export.gguf import write_gguf
        from phi3tui.core.export.lora_gguf import write_lora_gguf
        from phi3tui.core.export.verify import read_back

        adapter = self.require_adapter()
        # Before anything is written: a base with no GGUF architecture is refused, a quantized one de-quantized.
        dequantize, note = dequantize_for_gguf(self.require_base(), refuse=self.no_dequantize) if with_base else (False, "")
        if not with_base and self.base_model:
            refuse_gguf_architecture(self.base_model)
        if with_base:
            from phi3tui.core.files import refuse_overwrite

            refuse_overwrite(self.base_gguf_path, self.force, "the base GGUF", error=ExportError)
        lora = write_lora_gguf(adapter, self.lora_path, self.lora_outtype, force=self.force, progress=progress)
        report = read_back(lora.path, lora, kind="lora")
        if not report.ok:
            raise ExportError(f"{lora.path} does not read back: {'; '.join(report.problems)}")
        base = None
        if with_base and dequantize:
            import tempfile

            from phi3tui.core.export.fuse import dequantize_base

            # The de-quantized base is needed only to write its GGUF: it goes away afterwards.
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".base-dequantized-", dir=self.out_dir) as scratch:
                folder = dequantize_base(self.require_base(), Path(scratch) / "base", progress=progress)
                base = write_gguf(folder, self.base_gguf_path, self.outtype, self.name + "-base",
                                  self.tokenizer_model, force=self.force, progress=progress)
            base.notes.append(note)
        elif with_base:
            base = write_gguf(local_model_dir(self.require_base()), self.base_gguf_path, self.outtype, self.name + "-base",
                              self.tokenizer_model, force=self.force, progress=progress)
        self.results["lora-gguf"] = (lora, report, base)
        return lora, report, base

    def run_verify(self, progress: Progress = no_progress) -> list[str]:
        """Agreement lines for the GGUFs written so far (llama.cpp when installed); raises when any disagrees.

        Afterwards verify_state says whether llama.cpp agreed or the files only read back."""
        from phi3tui.core.export.verify import (
            LLAMA_CPP_MISSING,
            check_tokenizer,
            llama_cpp_available,
            read_back,
            verify_gguf,
            verify_lora,
        )

        lines, agreements = [], []
        targets = [p for p in (self.gguf_path, self.lora_path, self.base_gguf_path) if p.is_file()]
        if not targets:
            raise ExportError(f"nothing to verify in {self.out_dir}: write a GGUF first")
        for path in targets:
            report = read_back(path, kind="lora" if path == self.lora_path else "model")
            lines.append(f"{path.name}: {report.summary()}" + (f": {'; '.join(report.problems)}" if report.problems else ""))
            if not report.ok:
                raise ExportError(lines[-1])
        if not llama_cpp_available():
            state = VERIFY_READ_BACK_ONLY
            lines += [state, LLAMA_CPP_MISSING]
        else:
            prompts = list(self.prompts)
            if self.gguf_path.is_file() and (self.fused_dir / "config.json").is_file():
                from phi3tui.core.export.vocab import find_tokenizer_model

                byte_level = read_back(self.gguf_path).metadata.get("tokenizer.ggml.model") == "gpt2"
                if byte_level or find_tokenizer_model(self.fused_dir, self.tokenizer_model) is not None:
                    # Tokens first: logits mean nothing if llama.cpp splits the text differently.
                    progress(0, 2, "llama.cpp: tokenizer")
                    tokens = check_tokenizer(self.fused_dir, self.gguf_path, tokenizer_model=self.tokenizer_model)
                    lines.append(f"{self.gguf_path.name}: {tokens.summary()}")
                    if not tokens.ok:
                        self.results["verify"] = (lines, agreements, VERIFY_DISAGREES)
                        raise ExportError("; ".join(lines))
                else:
                    # transformers 5's legacy=False Phi-3 tokenizer itself differs from SentencePiece on leading
                    # spaces (shared/reference/gguf-phi3.md 9.7a): without tokenizer.model there is no true reference.
                    lines.append(f"{self.gguf_path.name}: tokenizer not compared: no tokenizer.model (SentencePiece) "
                                 "here or in the base model to compare llama.cpp with (give --tokenizer-model)")
                progress(0, 2, "llama.cpp: fused GGUF")
                a = verify_gguf(self.fused_dir, self.gguf_path, self.outtype, prompts, self.max_tokens)
                agreements.append(a)
                lines.append(f"{self.gguf_path.name}: {a.summary()}")
            if self.lora_path.is_file() and self.base_gguf_path.is_file() and self.adapter is not None:
                progress(1, 2, "llama.cpp: base GGUF + LoRA GGUF")
                # The worse of the two types decides the tolerance.
                kind = self.outtype if self.outtype not in ("f32", "f16") else self.lora_outtype
                a = verify_lora(self.require_base(), self.adapter, self.base_gguf_path, self.lora_path, kind, prompts, self.max_tokens)
                agreements.append(a)
                lines.append(f"{self.base_gguf_path.name} + {self.lora_path.name}: {a.summary()}")
            progress(2, 2, "verified")
            if not agreements:
                state = VERIFY_NOTHING_TO_RUN
                lines.append(state)
            else:
                state = VERIFY_AGREED if all(a.ok for a in agreements) else VERIFY_DISAGREES
        self.results["verify"] = (lines, agreements, state)
        if any(not a.ok for a in agreements):
            raise ExportError("; ".join(lines))
        return lines

    @property
    def verify_state(self) -> str | None:
        """VERIFY_AGREED, one of the read-back-only states, or None before verify has passed."""
        return self.results["verify"][2] if "verify" in self.results else None

    def shortfall(self, step: str) -> str | None:
        """Why a step that passed did less than its ✓ promises (verify without llama.cpp); None when it did it all."""
        if step == "verify" and self.verify_state != VERIFY_AGREED:
            return self.verify_state
        return None

    def run_ollama(self, replace: bool = False, create: bool = True, on_line=lambda line: None):
        from phi3tui.core.export.ollama import package

        if self.use_adapter_in_ollama:
            source, adapter = self.base_gguf_path, self.lora_path
            if not adapter.is_file():
                raise ExportError(f"{adapter} is missing: run `phi3tui export lora-gguf` first")
        else:
            source, adapter = self.gguf_path, None
        if not source.is_file():
            raise ExportError(f"{source} is missing: run `phi3tui export gguf` first")
        result = package(
            self.out_dir, source, self.name, adapter, self.effective_num_ctx(), self.training_max_seq_length(),
            self.system, self.quantize, replace=replace, force=self.force, create=create, on_line=on_line,
        )
        self.results["ollama"] = result
        return result
