"""The shape of the code: no library module over 500 lines, no function over 100, the package laid out by stage
with every import (module-level and inside functions) pointing down the stages, and no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dnalift"

#: the loose modules at the top of the package: the public API and the leaf vocabulary every stage uses
TOP_LEVEL = {"__init__", "errors", "options", "encoding", "graph", "plotting"}

#: each stage's rank: a module imports only from its own stage or from stages of a lower rank
STAGE_RANK = {"errors": 0, "graph": 0, "options": 1, "encoding": 2, "plotting": 3, "models": 3, "io": 3,
              "attribution": 4, "references": 4, "normalize": 5, "pipeline": 6, "cli": 7}


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_over_500_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in _modules() if (n := len(p.read_text().splitlines())) > 500}
    assert not long


def test_no_function_over_100_lines():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > 100:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    assert not long


def _imports(path: Path, modules: set) -> set:
    """Modules of the package that ``path`` imports, at module level or inside functions (lazy imports count)."""
    found = set()
    package = _name(path) if path.name == "__init__.py" else _name(path).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != _name(path):
                found.add(name)
    return found


def test_no_import_cycles():
    paths = {_name(p): p for p in _modules()}
    graph = {name: _imports(path, set(paths)) for name, path in paths.items()}
    # a package imports its own submodules (its public names)
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    cycles = []
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "dnalift"


def test_stages_point_one_way():
    """cli -> pipeline -> normalize -> attribution, references -> models, io -> the leaf vocabulary."""
    paths = {_name(p): p for p in _modules()}
    assert {_stage(m) for m in paths} - {"dnalift"} <= set(STAGE_RANK), "a new stage needs its rank in STAGE_RANK"
    # the package itself (the public API, lazy) names every stage; a stage may read dnalift.__version__
    upward = [f"{m} imports {d}" for m, p in paths.items() if m != "dnalift" for d in _imports(p, set(paths))
              if d != "dnalift" and _stage(d) != _stage(m) and STAGE_RANK[_stage(d)] >= STAGE_RANK[_stage(m)]]
    assert not upward


def test_the_top_of_the_package_is_the_stages():
    loose = {p.stem for p in PACKAGE.glob("*.py")}
    assert loose <= TOP_LEVEL, f"loose modules beyond the public API and the leaf vocabulary: {loose - TOP_LEVEL}"
    assert len(loose) <= 6


def _op_names() -> set:
    from dnalift.attribution.registry import REGISTRY

    return set(REGISTRY) - {"max", "sum", "mean", "abs", "size", "dim", "t", "to", "pad", "identity"}


def _names_an_op(node, ops: set) -> bool:
    """An ``aten.x`` attribute, or a string (or a tuple/set/list of strings) that is a registered op's name."""
    if isinstance(node, ast.Attribute):
        chain = node
        while isinstance(chain, ast.Attribute):
            chain = chain.value
        return isinstance(chain, ast.Name) and chain.id == "aten" or "aten" in ast.unparse(node).split(".")[:3]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value in ops
    if isinstance(node, (ast.Tuple, ast.Set, ast.List)):
        return any(_names_an_op(e, ops) for e in node.elts)
    return False


#: graph clean-ups of the export layer that run before any rule is looked up (training flags, autocast regions,
#: shape arithmetic turned into literals): they rewrite the graph into the ops the registry knows
_BEFORE_THE_REGISTRY = {"models/passes.py"}


def test_no_op_name_is_compared_outside_the_registry():
    """The registry (and its kinds) is the one place that knows an op: nothing else compares op names."""
    ops = _op_names()
    found = []
    for path in _modules():
        rel = str(path.relative_to(PACKAGE))
        if rel == "attribution/registry.py" or rel.startswith("attribution/kinds/") or rel in _BEFORE_THE_REGISTRY:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare) or isinstance(node.left, ast.Attribute) and node.left.attr == "kind":
                continue  # a step's kind ("linear") names its rule family, not an op
            if any(_names_an_op(n, ops) for n in [node.left, *node.comparators]):
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert not found
