"""model_to_load answers without looking in the Hugging Face cache (issue 24, first paint: the Data screen asks before
the first paint; importing huggingface_hub for a lookup that cannot change the answer cost ~0.1 s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_model_to_load_gives_the_same_answers_and_leaves_huggingface_hub_unimported(demo_template):
    code = f"""
import sys
from phi3tui.core.models import ModelNotFound, model_to_load
root = {str(demo_template)!r}
answers = [model_to_load("microsoft/Phi-3-mini-4k-instruct", root), model_to_load("model", root)]
for bad in ("", "no/such/thing", "lora_config.yaml"):
    try:
        model_to_load(bad, root)
    except ModelNotFound:
        answers.append("refused")
print(answers, "huggingface_hub" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    model = (demo_template / "model").resolve()
    assert proc.stdout.strip() == (f"['microsoft/Phi-3-mini-4k-instruct', {str(model)!r}, 'refused', 'refused', "
                                   "'refused'] False"), proc.stdout + proc.stderr
