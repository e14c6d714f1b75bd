"""The layers hold: phi3tui's import graph has no cycle, and other packages reach core/config, core/data,
core/runs and core/chat only through their public faces (their __init__). Read from the source with ast, so
an import inside a function counts as much as one at the top of a module."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "phi3tui"
FACED = ("phi3tui.core.config", "phi3tui.core.data", "phi3tui.core.runs", "phi3tui.core.chat", "phi3tui.core.eval")
# Heavy modules, imported directly and late so that nothing heavy runs before the first paint.
HEAVY = {"phi3tui.core.chat.model", "phi3tui.core.runs.runner", "phi3tui.core.eval.scoring"}


def _modules(root: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(module, line) for every phi3tui module that `name` imports, anywhere in its file."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . / from .. import
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            # `from pkg import sub` imports the module pkg.sub; `from pkg import name` only pkg.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # an attribute or a module outside phi3tui
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append((target, node.lineno))
    return found


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(root: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """module -> {imported module: first line}. Importing a.b.c also runs a.b's __init__ (and a's), so those
    are edges too, except the importer's own packages: they are already being imported when it runs."""
    modules = _modules(root)
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        own = set(_ancestors(name)) | {name}
        for target, line in _imports(name, path, set(modules)):
            for module in [target, *reversed(_ancestors(target))]:
                if module in modules and module not in own:
                    edges.setdefault(module, line)
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One concrete cycle (a, b, …, a) for each strongly connected group of two or more modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graph is small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for group in groups:
        start = min(group)
        # Breadth-first from start back to start inside the group: the shortest loop through it.
        paths, seen = [[start]], {start}
        while paths:
            path = paths.pop(0)
            nxt = sorted(w for w in graph[path[-1]] if w in group)
            if start in nxt:
                cycles.append(path + [start])
                break
            for w in nxt:
                if w not in seen:
                    seen.add(w)
                    paths.append(path + [w])
    return cycles


def _describe(cycle: list[str], graph) -> str:
    # module:line of the import that leads to the next one
    return " -> ".join(f"{a}:{graph[a][b]}" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_no_import_cycles():
    graph = import_graph()
    assert "phi3tui.core.runs.runner" in graph and "phi3tui.app" in graph
    cycles = find_cycles(graph)
    assert cycles == [], "import cycles:\n" + "\n".join(_describe(c, graph) for c in cycles)


def test_the_cycle_finder_sees_cycles_through_late_imports(tmp_path):
    """The walk itself: a cycle closed by an import inside a function, and a relative one, are found."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def late():\n    from pkg.sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("from .c import thing\n")  # a face re-exporting its child: no cycle
    (pkg / "sub" / "c.py").write_text("thing = 1\ndef later():\n    from ..a import x\n")
    (pkg / "d.py").write_text("import json\nimport pkg.sub\n")
    graph = import_graph(pkg)
    assert graph["pkg.b"] == {"pkg.sub.c": 2, "pkg.sub": 2}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    (pkg / "b.py").write_text("import json\n")
    assert find_cycles(import_graph(pkg)) == []


def package_graph(root: Path = PACKAGE) -> dict[str, dict[str, tuple[str, str, int]]]:
    """package -> {package it imports: (importing module, imported module, line)}. A package is a folder of
    modules (core/config, core/runs, screens/train, …); a module directly in phi3tui/ or phi3tui/core/ is a unit of
    its own. Imports inside functions count: a loop closed late is still a loop between the two packages."""
    modules = _modules(root)
    top = {root.name, f"{root.name}.core"}

    def unit(module: str) -> str:
        if modules[module].name == "__init__.py":
            return module
        parent = module.rpartition(".")[0]
        return module if parent in top or parent == "" else parent

    packages: dict[str, dict[str, tuple[str, str, int]]] = {}
    for module, edges in import_graph(root).items():
        for target, line in edges.items():
            a, b = unit(module), unit(target)
            packages.setdefault(b, {})
            if a != b:
                packages.setdefault(a, {}).setdefault(b, (module, target, line))
    return packages


def test_no_loops_between_packages():
    """config, data, runs, eval, chat, export, models, … depend on each other one way only (DESIGN.md: a new
    feature has one obvious place to go)."""
    packages = package_graph()
    assert {"phi3tui.core.config", "phi3tui.core.eval", "phi3tui.core.runs"} <= set(packages)
    loops = find_cycles({a: dict.fromkeys(edges, 0) for a, edges in packages.items()})
    described = [" -> ".join(f"{a} ({packages[a][b][0]}:{packages[a][b][2]})" for a, b in zip(loop, loop[1:]))
                 for loop in loops]
    assert loops == [], "loops between packages:\n" + "\n".join(described)


def test_the_package_walk_sees_a_loop_closed_inside_a_function(tmp_path):
    pkg = tmp_path / "pkg"
    for sub in ("core/config", "core/eval"):
        (pkg / sub).mkdir(parents=True)
    for init in ("", "core", "core/config", "core/eval"):
        (pkg / init / "__init__.py").write_text("")
    (pkg / "core" / "config" / "schema.py").write_text("def keys():\n    from pkg.core.eval.probes import KEYS\n")
    (pkg / "core" / "eval" / "probes.py").write_text("KEYS = {}\n")
    (pkg / "core" / "eval" / "scoring.py").write_text("from pkg.core.config import schema\n")
    loops = find_cycles({a: dict.fromkeys(e, 0) for a, e in package_graph(pkg).items()})
    assert loops == [["pkg.core.config", "pkg.core.eval", "pkg.core.config"]]
    (pkg / "core" / "config" / "schema.py").write_text("KEYS = {}\n")
    assert find_cycles({a: dict.fromkeys(e, 0) for a, e in package_graph(pkg).items()}) == []


def _face(module: str) -> str | None:
    return next((face for face in FACED if module == face or module.startswith(face + ".")), None)


def face_violations(root: Path = PACKAGE) -> list[str]:
    """Imports of a faced package's inner module from outside that package (heavy modules excepted)."""
    modules = _modules(root)
    bad = []
    for name, path in modules.items():
        for target, line in _imports(name, path, set(modules)):
            face = _face(target)
            if face and target != face and target not in HEAVY and _face(name) != face:
                bad.append(f"{path.relative_to(root.parent)}:{line}: {target} (import it from {face})")
    return sorted(set(bad))


def test_other_packages_use_the_public_faces():
    assert face_violations() == []


def test_the_face_check_sees_an_inner_import(tmp_path):
    pkg = tmp_path / "phi3tui"
    for folder in ("core/runs", "core/chat", "screens"):
        (pkg / folder).mkdir(parents=True)
    for name in ("__init__.py", "core/__init__.py", "core/runs/__init__.py", "core/runs/store.py",
                 "core/runs/runner.py", "core/chat/__init__.py", "core/chat/model.py", "screens/__init__.py"):
        (pkg / name).write_text("")
    (pkg / "core/runs/__init__.py").write_text("from phi3tui.core.runs.store import read\n")  # inside: fine
    (pkg / "screens/train.py").write_text(
        "from phi3tui.core.runs import read\n"  # the face: fine
        "def go():\n"
        "    from phi3tui.core.runs.runner import main\n"  # heavy: fine
        "    from phi3tui.core.chat.model import M\n"  # heavy: fine
        "    from phi3tui.core.runs import store\n"  # an inner module through the face's name: not fine
        "    import phi3tui.core.runs.store\n"
    )
    assert face_violations(pkg) == [
        "phi3tui/screens/train.py:5: phi3tui.core.runs.store (import it from phi3tui.core.runs)",
        "phi3tui/screens/train.py:6: phi3tui.core.runs.store (import it from phi3tui.core.runs)",
    ]

