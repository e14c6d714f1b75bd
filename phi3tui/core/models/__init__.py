"""The model a config names, by job: where it is (locate), whether its files are safe to load (files), what it is
(info), the Phi models known offline (catalog), its structure and what fine-tuning trains in it (plan), the memory
a run needs (memory), and the Hugging Face cache and downloads (hub). Other packages import from here."""

from phi3tui.core.mlx_thread import mlx_thread
from phi3tui.core.models.catalog import (
    KNOWN_MODELS_FILE,
    KnownModel,
    known_model,
    known_model_modules,
    known_models,
    unsuited_reasons,
)
from phi3tui.core.models.files import PICKLE_SUFFIXES, model_folder_problem, safetensors_problem
from phi3tui.core.models.hub import CachedModel, DownloadCancelled, cached_models, download_model, model_choices, model_folder
from phi3tui.core.models.info import ModelInfo
from phi3tui.core.models.locate import (
    REPO_ID_RE,
    ModelLocation,
    ModelNotFound,
    is_phi3_model,
    locate_model,
    model_file,
    model_to_load,
    read_model_config,
    workspace_model,
)
from phi3tui.core.models.memory import (
    BYTES_PER_DTYPE,
    OPTIMIZERS,
    MemoryEstimate,
    batch_sequence_length,
    estimate_memory,
    human_bytes,
    longest_batched,
    weight_bytes,
)
from phi3tui.core.models.plan import (
    FINE_TUNE_TYPES,
    LoraPlan,
    adaptable_modules,
    adapter_layer_kinds,
    apply_fine_tune,
    build_structure,
    plan_lora,
    top_level_modules,
)

__all__ = [
    "BYTES_PER_DTYPE", "CachedModel", "DownloadCancelled", "FINE_TUNE_TYPES", "KNOWN_MODELS_FILE", "KnownModel",
    "LoraPlan", "MemoryEstimate", "ModelInfo", "ModelLocation", "ModelNotFound", "OPTIMIZERS", "PICKLE_SUFFIXES",
    "REPO_ID_RE", "adaptable_modules", "adapter_layer_kinds", "apply_fine_tune", "build_structure", "cached_models",
    "batch_sequence_length", "download_model", "estimate_memory", "longest_batched", "human_bytes", "is_phi3_model", "known_model", "known_model_modules",
    "known_models", "locate_model", "mlx_thread", "model_choices", "model_file", "model_folder",
    "model_folder_problem", "model_to_load", "plan_lora", "read_model_config",
    "safetensors_problem", "top_level_modules", "unsuited_reasons", "weight_bytes", "workspace_model",
]
