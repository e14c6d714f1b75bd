"""Ollama packaging: a linted Modelfile with an explicit template, then `ollama create` when it can.

Always an explicit TEMPLATE: Ollama otherwise guesses one from the GGUF's chat template, and for the
current Phi-3 template its nearest match is zephyr (wrong turn markers and stops). The TEMPLATE and the
stops are derived from the GGUF's own chat template and special tokens (Phi-3 puts a newline after each
role tag, Phi-4-mini none), and the derivation is checked by rendering conversations both ways.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from phi3tui.core.export import OLLAMA_QUANTIZE, ExportError
from phi3tui.core.files import atomic_write_text, refuse_overwrite, shell_command

class OllamaModelExists(ExportError):
    """An Ollama model of that name exists: ask before replacing it."""


# Phi-3's chat format in Go template syntax: the same text the model's HF chat template renders.
PHI3_TEMPLATE = (
    "{{- range .Messages }}"
    '{{- if eq .Role "system" }}<|system|>\n{{ .Content }}<|end|>\n'
    '{{ else if eq .Role "user" }}<|user|>\n{{ .Content }}<|end|>\n'
    '{{ else if eq .Role "assistant" }}<|assistant|>\n{{ .Content }}<|end|>\n'
    "{{ end }}{{- end }}<|assistant|>\n"
)
PHI3_STOPS = ("<|end|>", "<|user|>", "<|assistant|>", "<|endoftext|>")
DEFAULT_NUM_CTX = 4096
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)?(:[a-zA-Z0-9._-]+)?$")
KNOWN_PARAMETERS = {
    "stop": str, "num_ctx": int, "num_predict": int, "num_keep": int, "repeat_last_n": int, "seed": int, "top_k": int,
    "temperature": float, "top_p": float, "min_p": float, "repeat_penalty": float,
}
TEMPLATE_FIELDS = {".Messages", ".Role", ".Content", ".System", ".Prompt", ".Response", ".Tools", ".ToolCalls", ".Think"}


@dataclass(frozen=True)
class ChatFormat:
    """An Ollama TEMPLATE (Go syntax) and its stop strings."""

    template: str
    stops: tuple[str, ...]
    source: str = "Phi-3's chat format"


PHI3_FORMAT = ChatFormat(PHI3_TEMPLATE, PHI3_STOPS)
ROLES = ("system", "user", "assistant")


def _render(template: str, messages: list[dict], specials: dict) -> str:
    """The chat template rendered as transformers renders it (sandboxed jinja2, generation prompt on)."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=True, **specials)


def _go_template(parts: dict[str, tuple[str, str]], generation: str) -> str:
    branches = []
    for i, role in enumerate(ROLES):
        pre, post = parts[role]
        head = "{{- if" if i == 0 else "{{ else if"
        branches.append(f'{head} eq .Role "{role}" }}}}{pre}{{{{ .Content }}}}{post}')
    return "{{- range .Messages }}" + "".join(branches) + "{{ end }}{{- end }}" + generation


def chat_format(chat_template: str, special_tokens: list[str], eos_tokens: list[str], specials: dict, where: str) -> ChatFormat:
    """The Ollama TEMPLATE and stops equivalent to a HF chat template, or ExportError when there is none.

    Each message is taken to render as <prefix of its role> content <suffix of its role>, and the generation
    prompt as a fixed text after the last; the parts are read off renderings with marker contents, then
    the Go template is checked against the chat template on several conversations.
    """
    from jinja2 import TemplateError

    refuse = f"{where}: the chat template cannot be written as an Ollama TEMPLATE ({{}}); write the Modelfile's TEMPLATE by hand"
    marks = ["\x01A\x01", "\x01B\x01"]
    try:
        parts = {}
        for role in ROLES:
            one = _render(chat_template, [{"role": role, "content": marks[0]}], specials)
            pre, _, tail = one.partition(marks[0])
            parts[role] = (pre, tail)  # tail = suffix + generation prompt, split below
        two = _render(chat_template, [{"role": "user", "content": marks[0]}, {"role": "user", "content": marks[1]}], specials)
        between = two.split(marks[0], 1)[1].split(marks[1], 1)[0]  # suffix(user) + prefix(user)
        pre_user, tail_user = parts["user"]
        if not between.endswith(pre_user) or not tail_user.startswith(between[: len(between) - len(pre_user)]):
            raise ValueError("a user message does not render the same after another one")
        generation = tail_user[len(between) - len(pre_user):]
        for role in ROLES:
            pre, tail = parts[role]
            if not tail.endswith(generation):
                raise ValueError(f"the generation prompt does not follow a {role} message")
            parts[role] = (pre, tail[: len(tail) - len(generation)])
        fmt_template = _go_template(parts, generation)
        if "{{" in "".join(a + b for a, b in parts.values()) + generation:
            raise ValueError("its text contains {{")
        conversations = [
            [("user", "Hi")],
            [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello."), ("user", "Why?")],
            [("user", "one"), ("assistant", "two"), ("user", "three")],
            [("system", "S"), ("user", "U")],
        ]
        for conversation in conversations:
            want = _render(chat_template, [{"role": r, "content": c} for r, c in conversation], specials)
            got = "".join(parts[r][0] + c + parts[r][1] for r, c in conversation) + generation
            if want != got:
                raise ValueError(f"a {'/'.join(r for r, _ in conversation)} conversation renders differently")
    except (TemplateError, ValueError, TypeError) as exc:
        raise ExportError(refuse.format(exc)) from None
    # Stops: the special tokens that end a turn or open the next one, then the end-of-text tokens.
    stops = []
    for text in (parts["assistant"][1], parts["user"][0], generation, *eos_tokens):
        for token in sorted((t for t in special_tokens if t in text), key=text.index):
            if token not in stops:
                stops.append(token)
    if not stops:
        raise ExportError(refuse.format("no special token ends an assistant turn"))
    return ChatFormat(fmt_template, tuple(stops), f"{where}'s chat template")


def chat_format_from_gguf(gguf_path: Path) -> ChatFormat:
    """The TEMPLATE and stops for the model in a GGUF: from its tokenizer.chat_template and special tokens."""
    from gguf import GGUFReader

    try:
        fields = GGUFReader(str(gguf_path)).fields
    except Exception as exc:  # the reader raises assorted errors on a damaged file
        raise ExportError(f"{gguf_path}: not a readable GGUF ({exc}); export it again") from None
    if "tokenizer.chat_template" not in fields:
        raise ExportError(f"{gguf_path}: no tokenizer.chat_template; export it again from a model folder with a chat template")
    tokens = fields["tokenizer.ggml.tokens"].contents()
    types = fields["tokenizer.ggml.token_type"].contents()
    special = [t for t, kind in zip(tokens, types) if kind in (3, 4)]  # CONTROL, USER_DEFINED: the added tokens

    def token(key: str) -> str | None:
        return tokens[fields[key].contents()] if key in fields else None

    eos = token("tokenizer.ggml.eos_token_id")
    specials = {"bos_token": token("tokenizer.ggml.bos_token_id") or "", "eos_token": eos or ""}
    return chat_format(fields["tokenizer.chat_template"].contents(), special, [eos] if eos else [], specials, gguf_path.name)


def modelfile_text(
    from_path: str, adapter_path: str | None = None, num_ctx: int = DEFAULT_NUM_CTX,
    system: str | None = None, comment: str | None = None, fmt: ChatFormat = PHI3_FORMAT,
) -> str:
    """The Modelfile: FROM the GGUF (or base GGUF + ADAPTER), the model's TEMPLATE, its stops and num_ctx."""
    lines = []
    if comment:
        lines += [f"# {line}" for line in comment.splitlines()]
    lines.append(f"FROM {from_path}")
    if adapter_path:
        lines.append(f"ADAPTER {adapter_path}")
    lines.append(f'TEMPLATE """{fmt.template}"""')
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{s}"' for s in fmt.stops]
    lines.append(f"PARAMETER num_ctx {num_ctx}")
    return "\n".join(lines) + "\n"


# -- lint -----------------------------------------------------------------------------------------


@dataclass
class Instruction:
    line: int
    command: str
    value: str


def parse_modelfile(text: str) -> tuple[list[Instruction], list[str]]:
    """(instructions, problems): Modelfile syntax, with triple-quoted multi-line values."""
    instructions, problems = [], []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        command, _, value = stripped.partition(" ")
        start = i
        value = value.strip()
        if '"""' in value:
            body = value.split('"""', 1)[1]
            while '"""' not in body:
                if i >= len(lines):
                    problems.append(f"line {start}: {command} opens \"\"\" but never closes it")
                    break
                body += "\n" + lines[i]
                i += 1
            value = body.split('"""', 1)[0]
        instructions.append(Instruction(start, command.upper(), value))
    return instructions, problems


def lint_template(template: str, line: int) -> list[str]:
    problems = []
    actions = re.findall(r"{{-?\s*(.*?)\s*-?}}", template, re.S)
    if template.count("{{") != template.count("}}") or len(actions) != template.count("{{"):
        problems.append(f"line {line}: TEMPLATE has unbalanced {{{{ }}}}")
    depth = 0
    for action in actions:
        word = action.split()[0] if action.split() else ""
        if word in ("if", "range", "with", "block", "define"):
            depth += 1
        elif word == "end":
            depth -= 1
            if depth < 0:
                problems.append(f"line {line}: TEMPLATE has an {{{{ end }}}} with no block to close")
                depth = 0
        for name in re.findall(r"(?<![\w$])\.[A-Z]\w*", action):
            if name not in TEMPLATE_FIELDS:
                problems.append(f"line {line}: TEMPLATE uses {name}, which Ollama does not provide")
    if depth > 0:
        problems.append(f"line {line}: TEMPLATE leaves {depth} block(s) without {{{{ end }}}}")
    return problems


def lint_modelfile(text: str, base_dir: Path | None = None, min_ctx: int = 0, stops_needed=PHI3_STOPS) -> list[str]:
    """Problems that would make `ollama create` fail or the model misbehave; [] when it is fine."""
    instructions, problems = parse_modelfile(text)
    known = {"FROM", "ADAPTER", "TEMPLATE", "SYSTEM", "PARAMETER", "LICENSE", "MESSAGE", "REQUIRES", "RENDERER", "PARSER"}
    froms = [x for x in instructions if x.command == "FROM"]
    if len(froms) != 1:
        problems.append(f"the Modelfile needs exactly one FROM (it has {len(froms)})")
    if instructions and instructions[0].command != "FROM":
        problems.append(f"line {instructions[0].line}: FROM must come first")
    if len([x for x in instructions if x.command == "ADAPTER"]) > 1:
        problems.append("Ollama supports only one ADAPTER")
    stops, num_ctx = set(), None
    for ins in instructions:
        if ins.command not in known:
            problems.append(f"line {ins.line}: unknown instruction {ins.command}")
        elif ins.command in ("FROM", "ADAPTER") and base_dir is not None and _looks_like_path(ins.value):
            target = Path(ins.value).expanduser()
            target = target if target.is_absolute() else base_dir / target
            if not target.exists():
                problems.append(f"line {ins.line}: {ins.command} {ins.value}: no such file")
        elif ins.command == "TEMPLATE":
            problems += lint_template(ins.value, ins.line)
        elif ins.command == "PARAMETER":
            key, _, value = ins.value.partition(" ")
            value = value.strip()
            if key not in KNOWN_PARAMETERS:
                problems.append(f"line {ins.line}: unknown PARAMETER {key}")
                continue
            kind = KNOWN_PARAMETERS[key]
            if kind is str:
                stops.add(value.strip('"'))
                continue
            try:
                number = kind(value)
            except ValueError:
                problems.append(f"line {ins.line}: PARAMETER {key} needs a{'n integer' if kind is int else ' number'}, not {value!r}")
                continue
            if key == "num_ctx":
                num_ctx = number
    if not any(x.command == "TEMPLATE" for x in instructions):
        problems.append("no TEMPLATE: Ollama would guess one from the GGUF (for Phi-3 it guesses zephyr)")
    missing = [s for s in stops_needed if s not in stops]
    if missing:
        problems.append(f"PARAMETER stop is missing for {', '.join(missing)}")
    if min_ctx and (num_ctx or 0) < min_ctx:
        problems.append(f"PARAMETER num_ctx is {num_ctx}, less than the training max_seq_length {min_ctx}")
    return problems


def _looks_like_path(value: str) -> bool:
    return value.startswith((".", "/", "~")) or value.endswith(".gguf")


# -- writing the Modelfile ------------------------------------------------------------------------


@dataclass
class ModelfilePlan:
    path: Path
    text: str
    name: str


def write_modelfile(
    out_dir: Path, gguf_path: Path, name: str, adapter_gguf: Path | None = None, num_ctx: int = DEFAULT_NUM_CTX,
    min_ctx: int = 0, system: str | None = None, force: bool = False,
) -> ModelfilePlan:
    """Write out_dir/Modelfile (FROM paths relative to it), after linting it."""
    check_model_name(name)
    out_dir = Path(out_dir)
    path = out_dir / "Modelfile"
    refuse_overwrite(path, force, error=ExportError)

    def rel(p: Path) -> str:
        p = Path(p).resolve()
        try:
            return "./" + p.relative_to(out_dir.resolve()).as_posix()
        except ValueError:
            return str(p)

    if not Path(gguf_path).is_file():
        raise ExportError(f"{gguf_path} is missing: run `phi3tui export gguf` first")
    fmt = chat_format_from_gguf(Path(gguf_path))
    text = modelfile_text(
        rel(gguf_path), rel(adapter_gguf) if adapter_gguf else None, num_ctx=max(num_ctx, min_ctx), system=system,
        comment=f"{name}: made by phi3tui. Create it with: ollama create {name} -f Modelfile", fmt=fmt,
    )
    problems = lint_modelfile(text, out_dir, min_ctx=min_ctx, stops_needed=fmt.stops)
    if problems:
        raise ExportError("the Modelfile does not pass its checks: " + "; ".join(problems))
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return ModelfilePlan(path, text, name)


def check_model_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise ExportError(
            f"Ollama model name {name!r} is not valid: use lowercase letters, digits, '.', '_', '-' (and an optional :tag)"
        )


def check_quantizable(gguf_path: Path) -> None:
    """Ollama quantizes only from F32, F16 and BF16 GGUFs."""
    from gguf import GGUFReader, LlamaFileType

    field = GGUFReader(str(gguf_path)).fields.get("general.file_type")
    file_type = LlamaFileType(field.contents()) if field else None
    if file_type not in (LlamaFileType.ALL_F32, LlamaFileType.MOSTLY_F16, LlamaFileType.MOSTLY_BF16):
        kind = file_type.name if file_type else "unknown"
        raise ExportError(f"{gguf_path.name} is {kind}: Ollama quantizes only from an f32, f16 or bf16 GGUF; export f16 first")


# -- talking to Ollama ----------------------------------------------------------------------------


# Where Ollama's installers put the binary, for when it is not on PATH: a non-login `ssh mac phi3tui`
# gets a bare PATH without Homebrew's folders.
OLLAMA_DIRS = ("/opt/homebrew/bin", "/usr/local/bin", "/Applications/Ollama.app/Contents/Resources")

# The Ollama server is local: a system proxy (HTTP_PROXY) must not carry 127.0.0.1 away to another machine.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def find_ollama(places=OLLAMA_DIRS) -> str | None:
    """The ollama executable: on PATH, else in one of `places`; None when it is nowhere."""
    found = shutil.which("ollama")
    if found:
        return found
    for folder in places:
        candidate = Path(folder) / "ollama"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def ollama_get(path: str, timeout: float) -> dict:
    """GET a JSON answer from the Ollama server, never through a proxy."""
    with _LOCAL.open(f"{ollama_host()}{path}", timeout=timeout) as response:
        return json.loads(response.read().decode())


def ollama_host() -> str:
    host = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434")
    if not host.startswith(("http://", "https://")):
        host = "http://" + host
    return host.rstrip("/")


@dataclass
class OllamaStatus:
    binary: str | None
    server_version: str | None
    reason: str = ""

    @property
    def ready(self) -> bool:
        return bool(self.binary and self.server_version)


def ollama_status(timeout: float = 2.0) -> OllamaStatus:
    binary = find_ollama()
    if binary is None:
        places = ", ".join(OLLAMA_DIRS)
        return OllamaStatus(None, None, f"ollama is not installed (not on PATH nor in {places}; https://ollama.com/download)")
    try:
        version = ollama_get("/api/version", timeout).get("version", "?")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return OllamaStatus(binary, None, f"the ollama server at {ollama_host()} does not answer ({exc}); start it with `ollama serve`")
    return OllamaStatus(binary, version)


def model_exists(name: str, timeout: float = 5.0) -> bool:
    models = ollama_get("/api/tags", timeout).get("models", [])
    wanted = {name, name if ":" in name else f"{name}:latest"}
    return any(m.get("name") in wanted or m.get("model") in wanted for m in models)


def create_commands(modelfile: Path, name: str, quantize: str | None = None, prompt: str = "Hello, who are you?") -> list[str]:
    """The exact commands to run by hand."""
    q = ("--quantize", quantize) if quantize else ()
    return [
        shell_command("cd", modelfile.parent),
        shell_command("ollama", "create", name, "-f", modelfile.name, *q),
        shell_command("ollama", "run", name, prompt),
    ]


def create_model(
    modelfile: Path, name: str, quantize: str | None = None, on_line: Callable[[str], None] = lambda line: None,
) -> None:
    """`ollama create NAME -f Modelfile [--quantize Q]`, reporting each progress line."""
    if quantize and quantize not in OLLAMA_QUANTIZE:
        raise ExportError(f"--quantize {quantize}: Ollama quantizes to {', '.join(OLLAMA_QUANTIZE)}")
    cmd = [find_ollama() or "ollama", "create", name, "-f", str(modelfile)] + (["--quantize", quantize] if quantize else [])
    proc = subprocess.Popen(cmd, cwd=modelfile.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail = []
    assert proc.stdout is not None
    for line in proc.stdout:
        for part in line.replace("\r", "\n").splitlines():
            if part.strip():
                tail = (tail + [part.strip()])[-5:]
                on_line(part.strip())
    if proc.wait() != 0:
        raise ExportError(f"`{shell_command(*cmd)}` failed: {' | '.join(tail)}")


def test_prompt(name: str, prompt: str, timeout: float = 300) -> str:
    """One answer from the new model through Ollama's API (no streaming)."""
    body = json.dumps({"model": name, "messages": [{"role": "user", "content": prompt}], "stream": False,
                       "options": {"num_predict": 32, "temperature": 0}}).encode()
    request = urllib.request.Request(f"{ollama_host()}/api/chat", data=body, headers={"Content-Type": "application/json"})
    with _LOCAL.open(request, timeout=timeout) as response:
        return json.loads(response.read().decode())["message"]["content"]


@dataclass
class OllamaResult:
    modelfile: Path
    name: str
    created: bool
    reason: str = ""
    commands: list[str] = field(default_factory=list)
    answer: str | None = None

    def summary(self) -> str:
        if self.created:
            return f"ollama model {self.name} created from {self.modelfile}; test answer: {self.answer!r}"
        return f"{self.modelfile} written; {self.reason}; run: " + " && ".join(self.commands)


def check_replace(name: str, exists: bool, replace: bool) -> None:
    """An existing Ollama model is replaced only when the person said so (the wizard's confirm, or --yes)."""
    if exists and not replace:
        raise OllamaModelExists(f"an Ollama model named {name} exists; choose another name or confirm replacing it (--yes)")


def package(
    out_dir: Path, gguf_path: Path, name: str, adapter_gguf: Path | None = None, num_ctx: int = DEFAULT_NUM_CTX,
    min_ctx: int = 0, system: str | None = None, quantize: str | None = None, replace: bool = False,
    force: bool = False, create: bool = True, on_line: Callable[[str], None] = lambda line: None,
    prompt: str = "Hello, who are you?",
) -> OllamaResult:
    """Write the Modelfile; create the Ollama model when Ollama is installed and its server answers."""
    if quantize and quantize not in OLLAMA_QUANTIZE:
        raise ExportError(f"--quantize {quantize}: Ollama quantizes to {', '.join(OLLAMA_QUANTIZE)}")
    if quantize:
        check_quantizable(Path(gguf_path))
    plan = write_modelfile(out_dir, gguf_path, name, adapter_gguf, num_ctx, min_ctx, system, force)
    commands = create_commands(plan.path, name, quantize, prompt)
    if not create:
        return OllamaResult(plan.path, name, False, "ollama create not requested", commands)
    status = ollama_status()
    if not status.ready:
        return OllamaResult(plan.path, name, False, status.reason, commands)
    check_replace(name, model_exists(name), replace)
    create_model(plan.path, name, quantize, on_line)
    return OllamaResult(plan.path, name, True, commands=commands, answer=test_prompt(name, prompt))


def demo_step(workspace, state: dict) -> str:
    """Headless demo: the Modelfile beside this job's GGUF; `ollama create` only when Ollama is there and answers.

    An Ollama model of the same name is replaced only with state["replace_ollama"] (`phi3tui demo --headless --yes`)."""
    gguf_path = state.get("gguf_path")
    if not gguf_path:
        # Never an older export lying in exports/: only what this job's GGUF step wrote.
        raise ExportError("no GGUF from this job: run the GGUF step first (`phi3tui export gguf`)")
    gguf_path = Path(gguf_path)
    name = state.get("export_name") or gguf_path.parent.name
    result = package(gguf_path.parent, gguf_path, name, force=True, replace=bool(state.get("replace_ollama")))
    state["modelfile"] = str(result.modelfile)
    return result.summary()
