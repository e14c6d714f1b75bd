"""One export, from choices to files: what the wizard and `phi3tui export` both drive.

Layout: <workspace>/exports/<name>/ holds fused/, <name>-<type>.gguf, <name>-lora-<type>.gguf,
<name>-base-<type>.gguf and the Modelfile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from phi3tui.core.adapters import AdapterRef
from phi3tui.core.export import ExportError, Progress, no_progress
from phi3tui.core.export.paths import adapter_config, base_model_of, default_export_name, read_json, resolve_adapter, safe_name
from phi3tui.core.export.steps import (  # noqa: F401 (the verify states: callers and tests take them from here)
    VERIFY_AGREED,
    VERIFY_DISAGREES,
    VERIFY_NOTHING_TO_RUN,
    VERIFY_READ_BACK_ONLY,
    StepOutcome,
    find_step,
)

DEFAULT_PROMPTS = ("What happens if you crack your knuckles a lot?", "Why is the sky blue?")


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
    model_dir: Path | None = None  # the fused model folder when not out_dir/fused (`fuse --save-path`, `gguf --model-dir`)
    gguf_file: Path | None = None  # the GGUF when not out_dir/NAME-TYPE.gguf (`gguf --outfile`)
    fuse_for_gguf: bool = True  # fuse for a GGUF (refuse what has none, de-quantize); `export fuse` alone: False
    lora_with_base: bool = True  # the LoRA GGUF step also writes the base model's GGUF (`--no-base`: False)
    replace_model: bool = False  # replace an Ollama model of the same name (the wizard's confirm, `--yes`)
    ollama_create: bool = True  # run `ollama create` when Ollama answers (`--no-create`: False)
    lmstudio_dir: Path | None = None  # LM Studio's models folder (`--models-dir`; default: lmstudio.models_dir())
    lmstudio_publisher: str = "phi3tui"  # the <publisher> folder LM Studio lists the model under (`--publisher`)
    results: dict = field(default_factory=dict)  # step id -> that step's own result
    outcomes: dict = field(default_factory=dict)  # step id -> its last StepOutcome
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
        return self.model_dir or self.out_dir / "fused"

    @property
    def gguf_path(self) -> Path:
        return self.gguf_file or self.out_dir / f"{self.name}-{self.outtype}.gguf"

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

    # -- the steps (core/export/steps.py: what each does) --------------------------------------------------
    def describe(self, step: str) -> list[str]:
        return find_step(step).describe(self)

    def existing_outputs(self, step: str) -> list[Path]:
        """What running `step` would replace (the wizard asks first; the CLI needs --force)."""
        from phi3tui.core.files import is_nonempty_dir

        return [p for p in find_step(step).outputs(self) if p.is_file() or is_nonempty_dir(p)]

    def run(self, step: str, progress: Progress = no_progress) -> StepOutcome:
        """Run one step (raises ExportError when it cannot); its outcome is kept in self.outcomes."""
        self.outcomes.pop(step, None)  # a failed run leaves no earlier pass's outcome behind
        outcome = find_step(step).run(self, progress)
        self.outcomes[step] = outcome
        return outcome

    def effective_num_ctx(self) -> int:
        from phi3tui.core.export.ollama import DEFAULT_NUM_CTX

        return max(self.num_ctx or DEFAULT_NUM_CTX, self.training_max_seq_length())

    # Each step's own result, as callers and tests take it.
    def run_fuse(self, progress: Progress = no_progress):
        return self.run("fuse", progress).result

    def run_gguf(self, progress: Progress = no_progress):
        return self.run("gguf", progress).result  # (written GGUF, read-back report)

    def run_lora(self, progress: Progress = no_progress, with_base: bool = True):
        self.lora_with_base = with_base
        return self.run("lora-gguf", progress).result  # (LoRA GGUF, its read-back, base GGUF or None)

    def run_verify(self, progress: Progress = no_progress) -> list[str]:
        """Agreement lines for the GGUFs written so far; raises when any disagrees (see verify_state)."""
        return self.run("verify", progress).result[0]

    def run_ollama(self, replace: bool = False, create: bool = True, progress: Progress = no_progress):
        self.replace_model, self.ollama_create = replace, create
        return self.run("ollama", progress).result

    @property
    def verify_state(self) -> str | None:
        """VERIFY_AGREED, one of the read-back-only states, or None before verify has passed."""
        return self.results["verify"][2] if "verify" in self.results else None

    def shortfall(self, step: str) -> str | None:
        """Why a step that passed did less than its ✓ promises (verify without llama.cpp, a Modelfile but no Ollama
        model); None when it did it all."""
        outcome = self.outcomes.get(step)
        return outcome.shortfall if outcome is not None else None
