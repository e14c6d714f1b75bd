"""The model a config names, by job: where it is (locate), whether its files are safe to load (files), what it is
(info), the Phi models known offline (catalog), its structure and what fine-tuning trains in it (plan), the memory
a run needs (memory), and the Hugging Face cache and downloads (hub). Other packages import from here."""

from phi3tui.core.lazy import lazy_attributes
from phi3tui.core.mlx_thread import mlx_thread

# Each name is imported from its module on first use (PEP 562): the first paint reads the config's model (locate)
# and needs none of the catalog, memory, plan or hub modules, whose dataclasses and tables cost milliseconds.
_LAZY = {
    "KNOWN_MODELS_FILE": "catalog", "KnownModel": "catalog", "known_model": "catalog",
    "known_model_modules": "catalog", "known_models": "catalog", "unsuited_reasons": "catalog",
    "PICKLE_SUFFIXES": "files", "model_folder_problem": "files", "safetensors_problem": "files",
    "CachedModel": "hub", "DownloadCancelled": "hub", "cached_models": "hub", "download_model": "hub",
    "model_choices": "hub", "model_folder": "hub", "ModelInfo": "info", "REPO_ID_RE": "locate",
    "ModelLocation": "locate", "ModelNotFound": "locate", "is_phi3_model": "locate", "locate_model": "locate",
    "model_file": "locate", "model_to_load": "locate", "read_model_config": "locate", "workspace_model": "locate",
    "BYTES_PER_DTYPE": "memory", "OPTIMIZERS": "memory", "MemoryEstimate": "memory",
    "batch_sequence_length": "memory", "estimate_memory": "memory", "human_bytes": "memory",
    "longest_batched": "memory", "weight_bytes": "memory", "FINE_TUNE_TYPES": "plan", "LoraPlan": "plan",
    "adaptable_modules": "plan", "adapter_layer_kinds": "plan", "apply_fine_tune": "plan", "build_structure": "plan",
    "plan_lora": "plan", "top_level_modules": "plan",
}

__getattr__ = lazy_attributes(__name__, _LAZY, globals())

__all__ = [
    "BYTES_PER_DTYPE", "CachedModel", "DownloadCancelled", "FINE_TUNE_TYPES", "KNOWN_MODELS_FILE", "KnownModel",
    "LoraPlan", "MemoryEstimate", "ModelInfo", "ModelLocation", "ModelNotFound", "OPTIMIZERS", "PICKLE_SUFFIXES",
    "REPO_ID_RE", "adaptable_modules", "adapter_layer_kinds", "apply_fine_tune", "build_structure", "cached_models",
    "batch_sequence_length", "download_model", "estimate_memory", "longest_batched", "human_bytes", "is_phi3_model", "known_model", "known_model_modules",
    "known_models", "locate_model", "mlx_thread", "model_choices", "model_file", "model_folder",
    "model_folder_problem", "model_to_load", "plan_lora", "read_model_config",
    "safetensors_problem", "top_level_modules", "unsuited_reasons", "weight_bytes", "workspace_model",
]
