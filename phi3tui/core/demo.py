"""Build the offline demo workspace: a tiny random-weight Phi-3, its tokenizer, data and config.

Nothing is downloaded. The model has the real Phi-3 architecture (fused qkv_proj and gate_up_proj)
at a toy size, so every screen, test and benchmark exercises the real mlx-lm code paths in seconds.
"""

from __future__ import annotations

import io
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from phi3tui.core.files import atomic_write_text
from phi3tui.core.workspace import CONFIG_NAME, Workspace

# Hand-written question/answer pairs about common misconceptions, written for this project (not copied
# from any dataset): one {"question", "answer", "incorrect"} object a line. "incorrect" is the misconception
# stated as an answer (made by rule from the question: "Do X ...?" -> "Yes. X ...", else a plain "Yes. That is
# true..." or, where the answer agrees, "No. That is a myth..."), so the test split can be scored as multiple choice.
DEMO_PAIRS_FILE = Path(__file__).with_name("demo_pairs.jsonl")


def demo_pairs() -> list[tuple[str, str]]:
    with DEMO_PAIRS_FILE.open(encoding="utf-8") as f:
        return [(row["question"], row["answer"]) for row in map(json.loads, f)]


# Phi-3's added tokens, in the order Phi-3-mini-4k-instruct numbers them (32000…32010 there).
PHI3_ADDED_TOKENS = (
    "<|endoftext|>",
    "<|assistant|>",
    "<|placeholder1|>",
    "<|placeholder2|>",
    "<|placeholder3|>",
    "<|placeholder4|>",
    "<|system|>",
    "<|end|>",
    "<|placeholder5|>",
    "<|placeholder6|>",
    "<|user|>",
)

# The chat template Phi-3-mini-4k-instruct ships in its tokenizer_config.json.
PHI3_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

SPM_VOCAB_SIZE = 1000  # SentencePiece pieces at most; the Phi-3 added tokens follow them
VOCAB_PAD_MULTIPLE = 64  # the model's vocabulary is padded above the tokenizer's, like Phi-3's 32064

DEMO_MODEL_CONFIG = {
    "architectures": ["Phi3ForCausalLM"],
    "model_type": "phi3",
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "max_position_embeddings": 4096,
    "original_max_position_embeddings": 4096,
    "sliding_window": 2047,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "torch_dtype": "float32",
    "bos_token_id": 1,
}

# The tutorial's lora_config.yaml, key for key, made valid for today's mlx-lm
# (num_layers instead of lora_layers, full module paths in keys) and tuned for the tiny model.
DEMO_CONFIG_YAML = """\
# The path to the local model directory or Hugging Face repo.
model: "model"
# Whether or not to train (boolean)
train: true

# Directory with {train, valid, test}.jsonl files
data: "data"

# The PRNG seed
seed: 0

# Number of layers to fine-tune (the tutorial's lora_layers; -1 means all)
num_layers: -1

# Minibatch size.
batch_size: 4

# Iterations to train for.
iters: 100

# Number of validation batches, -1 uses the entire validation set.
val_batches: -1

# Adam learning rate.
learning_rate: 1e-3

# Number of training steps between loss reporting.
steps_per_report: 10

# Number of training steps between validations.
steps_per_eval: 25

# Load path to resume training with the given adapter weights.
resume_adapter_file: null

# Save/load path for the trained adapter weights.
adapter_path: "adapters"

# Save the model every N iterations.
save_every: 50

# Evaluate on the test set after training
test: false

# Number of test set batches, -1 uses the entire test set.
test_batches: -1

# Maximum sequence length.
max_seq_length: 256

# Use gradient checkpointing to reduce memory use.
grad_checkpoint: false

# LoRA parameters can only be specified in a config file
lora_parameters:
  # The layer keys to apply LoRA to: full module paths inside a block.
  keys: ["self_attn.o_proj", "self_attn.qkv_proj", "mlp.gate_up_proj", "mlp.down_proj"]
  rank: 16
  scale: 2.0
  dropout: 0.0
"""


@dataclass(frozen=True)
class DemoResult:
    workspace: Workspace
    created: bool  # False when an existing demo workspace was reused


def split_pairs(pairs, seed: int = 0, valid_fraction: float = 0.1, test_fraction: float = 0.1):
    """Shuffle reproducibly and split into train / valid / test lists."""
    items = list(pairs)
    random.Random(seed).shuffle(items)
    n_valid = max(1, int(len(items) * valid_fraction))
    n_test = max(1, int(len(items) * test_fraction))
    return items[n_valid + n_test :], items[:n_valid], items[n_valid : n_valid + n_test]


def write_demo_preference_data(data_dir: Path, seed: int = 0) -> dict[str, int]:
    """The demo pairs as preference records for DPO/ORPO: each answer is chosen for its own question and
    rejected as the answer to the next question of its split (a fluent answer to another question)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, rows in zip(("train", "valid", "test"), split_pairs(demo_pairs(), seed=seed)):
        records = [
            {"prompt": q, "chosen": a, "rejected": rows[(i + 1) % len(rows)][1]}
            for i, (q, a) in enumerate(rows) if rows[(i + 1) % len(rows)][1] != a
        ]
        atomic_write_text(data_dir / f"{name}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        counts[name] = len(records)
    return counts


def write_demo_grpo_data(data_dir: Path, seed: int = 0) -> dict[str, int]:
    """The demo pairs as prompt-answer records for GRPO: the question, its answer, and as correct_answers the
    answer and its first word ("No", "Yes", …: what a tiny model can learn to say in a short pass)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, rows in zip(("train", "valid", "test"), split_pairs(demo_pairs(), seed=seed)):
        records = [{"prompt": q, "answer": a, "correct_answers": [a.split()[0].strip(".,!;:"), a]} for q, a in rows]
        atomic_write_text(data_dir / f"{name}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        counts[name] = len(records)
    return counts


def write_demo_data(data_dir: Path, seed: int = 0) -> dict[str, int]:
    from phi3tui.core.data import tutorial_text  # the record format's one owner (late: the data package is larger)

    data_dir.mkdir(parents=True, exist_ok=True)
    with DEMO_PAIRS_FILE.open(encoding="utf-8") as f:
        incorrect = {row["question"]: row["incorrect"] for row in map(json.loads, f)}
    train, valid, test = split_pairs(demo_pairs(), seed=seed)
    counts = {}
    for name, rows in (("train", train), ("valid", valid), ("test", test)):
        # The test records also carry the wrong answer, for multiple choice (mlx-lm ignores other keys).
        extra = (lambda q: {"incorrect": [incorrect[q]]}) if name == "test" else (lambda q: {})
        lines = [json.dumps({"text": tutorial_text(q, a), **extra(q)}, ensure_ascii=False) for q, a in rows]
        atomic_write_text(data_dir / f"{name}.jsonl", "\n".join(lines) + "\n")
        counts[name] = len(rows)
    return counts


def _train_sentencepiece(corpus: list[str]) -> bytes:
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=buffer,
        model_type="bpe",
        vocab_size=SPM_VOCAB_SIZE,
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    return buffer.getvalue()


def write_demo_tokenizer(model_dir: Path) -> dict[str, int]:
    """Train a SentencePiece BPE model on the demo corpus and save it the way Phi-3 ships.

    Returns the ids of the Phi-3 special tokens.
    """
    pairs = demo_pairs()
    corpus = [q for q, _ in pairs] + [a for _, a in pairs]
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "tokenizer.model").write_bytes(_train_sentencepiece(corpus))
    return write_tokenizer_files(model_dir)


def write_tokenizer_files(model_dir: Path) -> dict[str, int]:
    """tokenizer.json and tokenizer_config.json from the folder's SentencePiece tokenizer.model, with Phi-3's added
    tokens after its pieces and Phi-3's chat template. Returns the ids of the Phi-3 special tokens."""
    from tokenizers.models import BPE
    from transformers import LlamaTokenizer
    from transformers.convert_slow_tokenizer import SentencePieceExtractor

    # transformers 5 cannot read tokenizer.model directly (it yields an empty vocabulary): convert.
    extracted = SentencePieceExtractor(str(model_dir / "tokenizer.model")).extract(BPE)
    tokenizer = LlamaTokenizer(
        vocab=extracted["vocab"],
        merges=extracted["merges"],
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        add_bos_token=False,
        add_eos_token=False,
        legacy=False,
    )
    from tokenizers import AddedToken

    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False, rstrip=True) for t in PHI3_ADDED_TOKENS],
        special_tokens=True,
    )
    tokenizer.chat_template = PHI3_CHAT_TEMPLATE
    tokenizer.model_max_length = 4096
    tokenizer.save_pretrained(str(model_dir))
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<unk>", "<s>", "</s>", *PHI3_ADDED_TOKENS)}
    _tidy_tokenizer_config(model_dir)
    return ids


def _tidy_tokenizer_config(model_dir: Path) -> None:
    """Make tokenizer_config.json explicit the way Phi-3's is (add_bos_token false, a Llama class)."""
    path = model_dir / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    cfg["add_bos_token"] = False
    cfg["add_eos_token"] = False
    cfg["tokenizer_class"] = "LlamaTokenizer"
    cfg["chat_template"] = PHI3_CHAT_TEMPLATE
    atomic_write_text(path, json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


def write_demo_model(model_dir: Path, seed: int = 0) -> None:
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import phi3

    ids = write_demo_tokenizer(model_dir)
    config = dict(DEMO_MODEL_CONFIG)
    n_tokens = max(ids.values()) + 1
    config["vocab_size"] = -(-n_tokens // VOCAB_PAD_MULTIPLE) * VOCAB_PAD_MULTIPLE
    if config["vocab_size"] == n_tokens:
        config["vocab_size"] += VOCAB_PAD_MULTIPLE
    config["eos_token_id"] = ids["<|endoftext|>"]
    config["pad_token_id"] = ids["<|endoftext|>"]
    mx.random.seed(seed)
    model = phi3.Model(phi3.ModelArgs.from_dict(config))
    mx.eval(model.parameters())
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(model_dir / "model.safetensors"), weights, metadata={"format": "mlx"})
    atomic_write_text(model_dir / "config.json", json.dumps(config, indent=2) + "\n")
    generation = {
        "bos_token_id": ids["<s>"],
        "eos_token_id": [ids["<|endoftext|>"], ids["<|assistant|>"], ids["<|end|>"]],
        "pad_token_id": ids["<|endoftext|>"],
    }
    atomic_write_text(model_dir / "generation_config.json", json.dumps(generation, indent=2) + "\n")


def build_demo(target: Path | str, force: bool = False) -> DemoResult:
    """Create the demo workspace at ``target``, or reuse it when it is already complete."""
    root = Path(target).expanduser().resolve()
    ws = Workspace(root)
    model_dir = root / "model"
    complete = (
        (model_dir / "model.safetensors").is_file()
        and (model_dir / "tokenizer.model").is_file()
        and (root / "data" / "train.jsonl").is_file()
        and (root / CONFIG_NAME).is_file()
    )
    if complete and not force:
        return DemoResult(ws, created=False)
    if root.exists() and any(root.iterdir()) and not complete and not (root / ".phi3tui-demo").exists():
        raise FileExistsError(
            f"{root} is not empty and is not a phi3tui demo workspace; choose an empty or new folder"
        )
    root.mkdir(parents=True, exist_ok=True)
    (root / ".phi3tui-demo").write_text("built by phi3tui demo\n")
    if model_dir.exists() and force:
        shutil.rmtree(model_dir)
    write_demo_model(model_dir)
    write_demo_data(root / "data")
    if not (root / CONFIG_NAME).exists() or force:
        atomic_write_text(root / CONFIG_NAME, DEMO_CONFIG_YAML)
    (root / "runs").mkdir(exist_ok=True)
    (root / "exports").mkdir(exist_ok=True)
    return DemoResult(ws, created=True)


# -- a tiny Phi-4-mini: same phi3 architecture, byte-level BPE vocabulary -----------------------------

# Phi-4-mini-instruct's special tokens (there numbered from 199999 on) and its chat template: no newline after role tags.
PHI4_SPECIAL_TOKENS = ("<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>", "<|tool|>", "<|/tool|>")
PHI4_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' and 'tools' in message and message['tools'] is not none %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|tool|>' + message['tools'] + '<|/tool|>' + '<|end|>' }}"
    "{% else %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)
# Phi-4-mini's markers around the model's own tool calls (there 200025 and 200026), added for tool calling.
PHI4_TOOL_CALL_TOKENS = ("<|tool_call|>", "<|/tool_call|>")
# A Phi-4-mini-style template that expresses tool calling end to end, written for this project. Phi-4-mini's own
# reads tool definitions only from a system message's `tools` string and never prints an assistant's tool calls;
# this one keeps its markers and layout but also takes `tools` the way mlx-lm passes them (apply_chat_template's
# tools=, the records' "tools"), putting them as JSON into the system message (one is opened when the conversation
# has none), and prints tool calls as <|tool_call|>[{"name", "arguments"}, ...]<|/tool_call|> before the turn's
# <|end|>. Tool results render as Phi-4-mini's do: <|tool|>result<|end|>.
PHI4_TOOLS_CHAT_TEMPLATE = (
    "{%- set tool_text = (tools | tojson) if tools else none -%}"
    "{%- if tool_text and (not messages or messages[0]['role'] != 'system') -%}"
    "{{ '<|system|><|tool|>' + tool_text + '<|/tool|><|end|>' }}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- set own = message['tools'] if message.get('tools') is not none else tool_text -%}"
    "{{ '<|system|>' + message['content'] }}"
    "{%- if own %}{{ '<|tool|>' + (own if own is string else (own | tojson)) + '<|/tool|>' }}{% endif -%}"
    "{{ '<|end|>' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>' + (message['content'] or '') }}"
    "{%- if message.get('tool_calls') -%}"
    "{{ '<|tool_call|>[' }}"
    "{%- for call in message['tool_calls'] -%}"
    "{%- set function = call['function'] if call.get('function') else call -%}"
    "{%- set arguments = function.get('arguments', {}) -%}"
    "{{ (', ' if not loop.first else '') + '{\"name\": ' + (function['name'] | tojson) + ', \"arguments\": '"
    " + (arguments if arguments is string else (arguments | tojson)) + '}' }}"
    "{%- endfor -%}"
    "{{ ']<|/tool_call|>' }}"
    "{%- endif -%}"
    "{{ '<|end|>' }}"
    "{%- else -%}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif -%}"
)
PHI4_BPE_VOCAB_SIZE = 1200  # merges learned at most (the 256 byte symbols included)

PHI4_MINI_CONFIG = {
    "architectures": ["Phi3ForCausalLM"],
    "model_type": "phi3",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,  # grouped KV heads, as Phi-4-mini (24 of 8)
    "partial_rotary_factor": 0.75,  # RoPE on 12 of 16 head dims
    "tie_word_embeddings": True,  # no lm_head
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 4096,
    "original_max_position_embeddings": 512,
    "sliding_window": 262144,
    "hidden_act": "silu",
    "torch_dtype": "float32",
}


def write_phi4_mini_tokenizer(model_dir: Path, tool_calling: bool = False) -> dict[str, int]:
    """Train a byte-level BPE (o200k split) on the demo corpus; save it as Phi-4-mini's is saved. Returns the special ids.
    tool_calling: add <|tool_call|> and <|/tool_call|> and use PHI4_TOOLS_CHAT_TEMPLATE instead of Phi-4-mini's own."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    from phi3tui.core.export import O200K_SPLIT_REGEX
    from transformers import PreTrainedTokenizerFast

    pairs = demo_pairs()
    corpus = [q for q, _ in pairs] + [a for _, a in pairs]
    corpus += ["Café naïve über 東京 日本語 😀 🚀 don't I'M 12345 \t tab\n\nnew lines"]  # every byte class seen
    # Frequent enough to become merges that only the o200k split allows (upper-case contractions, digit triples,
    # punctuation joined to a word): a GGUF naming another llama.cpp pre-tokenizer then tokenizes differently.
    corpus += ["She said I'M sure THEY'RE right (really) 1 22 333 4444 55555 3.14159 don't"] * 40
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(O200K_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=PHI4_BPE_VOCAB_SIZE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    specials = PHI4_SPECIAL_TOKENS + (PHI4_TOOL_CALL_TOKENS if tool_calling else ())
    template = PHI4_TOOLS_CHAT_TEMPLATE if tool_calling else PHI4_CHAT_TEMPLATE
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    fast.chat_template = template
    fast.model_max_length = 4096
    model_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(model_dir))
    path = model_dir / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    cfg.update(add_bos_token=False, add_eos_token=False, tokenizer_class="GPT2Tokenizer", chat_template=template)
    atomic_write_text(path, json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    return {t: tok.token_to_id(t) for t in specials}


def write_phi4_mini_model(model_dir: Path, seed: int = 0, longrope: bool = True, tool_calling: bool = False) -> dict:
    """A tiny random Phi-4-mini-style model (phi3 architecture, partial rotary, tied embeddings, grouped KV heads,
    LongRoPE, byte-level BPE; tool_calling: the tool-calling template, see write_phi4_mini_tokenizer). Returns its config."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import phi3

    ids = write_phi4_mini_tokenizer(Path(model_dir), tool_calling=tool_calling)
    config = dict(PHI4_MINI_CONFIG)
    n_tokens = max(ids.values()) + 1
    config["vocab_size"] = -(-n_tokens // VOCAB_PAD_MULTIPLE) * VOCAB_PAD_MULTIPLE + VOCAB_PAD_MULTIPLE  # padding rows
    config["bos_token_id"] = config["eos_token_id"] = config["pad_token_id"] = ids["<|endoftext|>"]
    if longrope:
        half = int(config["hidden_size"] // config["num_attention_heads"] * config["partial_rotary_factor"]) // 2
        config["rope_scaling"] = {
            "type": "longrope", "long_factor": [1.0 + 0.25 * i for i in range(half)], "short_factor": [1.0] * half,
        }
    mx.random.seed(seed)
    model = phi3.Model(phi3.ModelArgs.from_dict(config))
    mx.eval(model.parameters())
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(Path(model_dir) / "model.safetensors"), weights, metadata={"format": "mlx"})
    atomic_write_text(Path(model_dir) / "config.json", json.dumps(config, indent=2) + "\n")
    generation = {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": [ids["<|endoftext|>"], ids["<|end|>"]]}
    atomic_write_text(Path(model_dir) / "generation_config.json", json.dumps(generation, indent=2) + "\n")
    return config
