"""The training modes: each `train_mode` a config may name, and the TrainTask that trains it. ONE table.

Everyone who needs the modes reads this table: the Config screen's train_mode choices and the config check of
train_mode (core/config/schema.py), the runner and the Train screen's plotted metrics (core/runs/tasks.py).
Adding a mode is one module with its TrainTask class (core/runs/tasks.py says what it provides) plus one line here.

Why names rather than the classes: the tasks are the runs package's business and read config (their settings),
while config must know the modes without importing runs (tests/test_layers.py: no loops between packages). So
this leaf imports nothing, and each line names its class by import path, "module:Class"; core/runs/tasks.py
(`task_class`) imports it when a run starts or a run's metrics are plotted.
"""

from __future__ import annotations

# train_mode → its TrainTask class, as "module:Class". One line per mode.
TRAIN_MODES: dict[str, str] = {
    "sft": "phi3tui.core.runs.tasks:SftTask",
    "dpo": "phi3tui.core.runs.preference:PreferenceTask",
    "orpo": "phi3tui.core.runs.preference:PreferenceTask",
    "grpo": "phi3tui.core.runs.grpo:GrpoTask",
}
