"""Old lora_config.yaml files made to mean today what they meant then, one visible change at a time.

Each Change says what it does and why; the Config screen lets the user accept or reject each one,
`phi3tui config migrate` prints them, and a run applies them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from phi3tui.core.config.document import ConfigDocument, DocumentEditError

# Old names for modules that Phi-3 fuses (and the reverse, for models that keep them apart).
FUSED_INTO = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj",
              "gate_proj": "gate_up_proj", "up_proj": "gate_up_proj"}
SPLIT_INTO = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}

# Keys old mlx-examples/mlx-lm configs carried that today's `mlx_lm lora` ignores.
DROPPED = {
    "max_tokens": "a generation option of the old lora.py; generate on the Chat screen or with mlx_lm generate",
    "temp": "a generation option of the old lora.py; generate on the Chat screen or with mlx_lm generate",
    "prompt": "a generation option of the old lora.py; generate on the Chat screen or with mlx_lm generate",
}


@dataclass(frozen=True)
class Change:
    id: str  # stable between reviews of the same file, e.g. "rename:lora_layers"
    field: str  # dotted key it is about
    summary: str  # "lora_layers: 32 -> num_layers: 32"
    why: str
    edits: tuple  # ("rename", path, new_key) | ("set", path, value) | ("delete", path)

    def __str__(self) -> str:
        return f"{self.summary}  ({self.why})"


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return "null" if value is None else str(value)


def resolve_key(key: str, block_modules: list[str], top_modules: list[str]) -> list[str]:
    """The module paths a LoRA key was meant to name in this model ([] when none fits)."""
    if key in block_modules or key in top_modules:
        return [key]
    leaf = key.split(".")[-1]
    exact = [m for m in block_modules if m.split(".")[-1] == leaf]
    if exact:
        return exact
    if leaf in FUSED_INTO:
        return [m for m in block_modules if m.split(".")[-1] == FUSED_INTO[leaf]]
    if leaf in SPLIT_INTO:
        return [m for m in block_modules if m.split(".")[-1] in SPLIT_INTO[leaf]]
    return []


def plan_migration(values: dict, block_modules: list[str] | None = None,
                   top_modules: list[str] | None = None, defaults: dict | None = None,
                   blocks: int | None = None) -> list[Change]:
    """The changes that make `values` work with today's mlx-lm. block_modules=None: model unknown, so
    LoRA keys are left alone (the checks say so). `blocks`: the model's block count, if known."""
    changes: list[Change] = []
    if defaults is None:
        from phi3tui.core.config.schema import mlx_lm_defaults

        defaults = mlx_lm_defaults()

    if "lora_layers" in values:
        old = values["lora_layers"]
        if "num_layers" in values:
            changes.append(Change("drop:lora_layers", "lora_layers", f"remove lora_layers: {_fmt(old)}",
                                  f"num_layers ({values['num_layers']}) already says how many blocks to train; "
                                  "mlx-lm ignores lora_layers", (("delete", ("lora_layers",)),)))
        else:
            why = ("mlx-lm renamed lora_layers to num_layers and silently ignores the old key "
                   f"(it would train its default of {defaults.get('num_layers')} blocks instead)")
            new = old
            if isinstance(old, int) and blocks is not None and old > blocks:
                # Old files were written for one model (the tutorial's 32 = every block of Phi-3-mini).
                new = -1
                why += f"; this model has {blocks} blocks, so {old} (more than it has) becomes -1: all of them"
            edits: tuple = (("rename", ("lora_layers",), "num_layers"),)
            if new != old:
                edits += (("set", ("num_layers",), new),)
            changes.append(Change("rename:lora_layers", "lora_layers",
                                  f"lora_layers: {_fmt(old)} -> num_layers: {_fmt(new)}", why, edits))

    if "use_dora" in values:
        use = bool(values["use_dora"])
        if use and "fine_tune_type" not in values:
            changes.append(Change("rename:use_dora", "use_dora", "use_dora: true -> fine_tune_type: dora",
                                  "mlx-lm replaced use_dora with fine_tune_type (lora, dora or full)",
                                  (("rename", ("use_dora",), "fine_tune_type"), ("set", ("fine_tune_type",), "dora"))))
        else:
            changes.append(Change("drop:use_dora", "use_dora", f"remove use_dora: {_fmt(values['use_dora'])}",
                                  "mlx-lm ignores use_dora; fine_tune_type says lora, dora or full",
                                  (("delete", ("use_dora",)),)))

    if "adapter_file" in values:
        old = values["adapter_file"]
        if "adapter_path" in values or not isinstance(old, str):
            changes.append(Change("drop:adapter_file", "adapter_file", f"remove adapter_file: {_fmt(old)}",
                                  "mlx-lm ignores adapter_file; adapter_path names the adapters folder",
                                  (("delete", ("adapter_file",)),)))
        else:
            folder = str(PurePosixPath(old).with_suffix("")) if PurePosixPath(old).suffix else old
            changes.append(Change("rename:adapter_file", "adapter_file",
                                  f"adapter_file: {old} -> adapter_path: {folder}",
                                  "mlx-lm now saves adapters into a folder (adapter_path) instead of one file",
                                  (("rename", ("adapter_file",), "adapter_path"), ("set", ("adapter_path",), folder))))

    if "wandb" in values:
        project = values["wandb"]
        if project and "report_to" not in values:
            edits: tuple = (("rename", ("wandb",), "report_to"), ("set", ("report_to",), "wandb"))
            if "project_name" not in values:
                edits += (("set", ("project_name",), str(project)),)
            changes.append(Change("rename:wandb", "wandb", f"wandb: {project} -> report_to: wandb, project_name: {project}",
                                  "mlx-lm replaced wandb with report_to and project_name", edits))
        else:
            changes.append(Change("drop:wandb", "wandb", f"remove wandb: {_fmt(project)}",
                                  "mlx-lm ignores wandb; report_to and project_name replace it", (("delete", ("wandb",)),)))

    for key, why in DROPPED.items():
        if key in values:
            changes.append(Change(f"drop:{key}", key, f"remove {key}: {_fmt(values[key])}",
                                  f"{why}; mlx_lm lora ignores it", (("delete", (key,)),)))

    lora = values.get("lora_parameters")
    if isinstance(lora, dict) and values.get("fine_tune_type", "lora") != "full":
        changes += _lora_parameter_changes(lora, defaults.get("lora_parameters") or {}, block_modules, top_modules or [])
    return changes


def _lora_parameter_changes(lora: dict, lora_defaults: dict, block_modules, top_modules) -> list[Change]:
    changes = []
    lp = ("lora_parameters",)
    if "alpha" in lora:
        alpha = lora["alpha"]
        if "scale" in lora:
            changes.append(Change("drop:lora_parameters.alpha", "lora_parameters.alpha", f"remove alpha: {alpha}",
                                  f"mlx-lm has no alpha and uses scale ({lora['scale']}) instead", (("delete", lp + ("alpha",)),)))
        else:
            rank = lora.get("rank", lora_defaults.get("rank", 8))
            ok = isinstance(alpha, (int, float)) and isinstance(rank, (int, float)) and rank
            scale = float(alpha) / float(rank) if ok else lora_defaults.get("scale", 20.0)
            why = (f"mlx-lm has no alpha: it multiplies the LoRA output by scale, where PEFT-style tools use "
                   f"alpha / rank, so alpha {alpha} at rank {rank} is scale {scale:g}")
            changes.append(Change("rename:lora_parameters.alpha", "lora_parameters.alpha",
                                  f"alpha: {alpha} -> scale: {scale:g}", why,
                                  (("rename", lp + ("alpha",), "scale"), ("set", lp + ("scale",), scale))))
    for name in ("rank", "scale", "dropout"):
        if name not in lora and not (name == "scale" and "alpha" in lora) and name in lora_defaults:
            changes.append(Change(f"add:lora_parameters.{name}", f"lora_parameters.{name}",
                                  f"add {name}: {lora_defaults[name]}",
                                  f"a lora_parameters without {name} stops mlx-lm with KeyError "
                                  f"(yours replaces its defaults entirely); {lora_defaults[name]} is mlx-lm's default",
                                  (("set", lp + (name,), lora_defaults[name]),)))
    keys = lora.get("keys")
    if block_modules is not None and isinstance(keys, list) and keys:
        resolved: list[str] = []
        moved = []
        fused = False
        for key in keys:
            targets = resolve_key(str(key), block_modules, top_modules) if isinstance(key, str) else []
            if not targets:
                resolved.append(key)  # left for the checks to flag with the valid names
                continue
            if targets != [key]:
                moved.append(f"{key} -> {', '.join(targets)}")
                fused = fused or any(t.split(".")[-1] != key.split(".")[-1] for t in targets)
            resolved += [t for t in targets if t not in resolved]
        if resolved != keys:
            why = ("mlx-lm matches keys against module paths inside each block (self_attn.o_proj), so short "
                   "names match nothing and training stops with \"[grad] Must specify at least one argument.\"")
            if fused:
                why += "; this model's blocks name the q/k/v (gate/up) projections as they really are"
            changes.append(Change("keys:lora_parameters.keys", "lora_parameters.keys",
                                  f"keys {_fmt(keys)} -> {_fmt(resolved)}", why + f" ({'; '.join(moved)})",
                                  (("set", lp + ("keys",), resolved),)))
    return changes


def apply_changes(doc: ConfigDocument, changes: list[Change]) -> None:
    """Make the changes in the document's text (not saved): all of them, or (DocumentEditError, naming the
    change that could not be made) none."""
    with doc.transaction("the migration"):
        for change in changes:
            try:
                for edit in change.edits:
                    if edit[0] == "rename":
                        if doc.has(edit[1]):
                            doc.rename(edit[1], edit[2])
                    elif edit[0] == "set":
                        doc.set(edit[1], edit[2])
                    elif edit[0] == "delete":
                        doc.delete(edit[1])
            except DocumentEditError as exc:
                raise DocumentEditError(f"[{change.id}] {change.summary}: {exc}") from None


def migrated_text(text: str, changes: list[Change]) -> str:
    doc = ConfigDocument(text)
    apply_changes(doc, changes)
    return doc.text
