"""mlx-lm's own training path, recorded: what phi3tui's runner is compared against (tests, bench/).

`python -m bench.run_reference CONFIG ADAPTER_DIR OUT.json` trains the way `mlx_lm lora --config`
does (its config merge, lora.run's loading order, lora.train_model's setup and trainer) and writes every
train and validation report it receives through a TrainingCallback. lora.run itself cannot be used:
it replaces the callback it is given.
"""

from __future__ import annotations

import json
import sys
import time
import types


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import yaml
    from mlx_lm import lora
    from mlx_lm.tuner.datasets import load_dataset
    from mlx_lm.tuner.trainer import TrainingCallback
    from mlx_lm.utils import load

    config, adapter_dir, out = sys.argv[1:4] if argv is None else argv
    with open(config, encoding="utf-8") as handle:
        values = yaml.load(handle, lora.yaml_loader)
    for key, default in lora.CONFIG_DEFAULTS.items():
        if values.get(key) is None:
            values[key] = default
    values["adapter_path"] = adapter_dir
    args = types.SimpleNamespace(**values)
    records: list[dict] = []

    class Recorder(TrainingCallback):
        def on_train_loss_report(self, info):
            records.append({"kind": "train", "iteration": info["iteration"], "loss": info["train_loss"],
                            "tokens_per_s": info["tokens_per_second"],
                            "trained_tokens": info["trained_tokens"], "time": time.time()})

        def on_val_loss_report(self, info):
            records.append({"kind": "val", "iteration": info["iteration"], "loss": info["val_loss"]})

    np.random.seed(args.seed)
    model, tokenizer = load(args.model)
    train_set, valid_set, _ = load_dataset(args, tokenizer)
    lora.train_model(args, model, train_set, valid_set, Recorder())
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(records, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
