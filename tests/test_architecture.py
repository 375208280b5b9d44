"""ARCHITECTURE.md's import rules, read from the source with ``ast``: every module imports only its
own floor or the floors below, and no two modules import each other, directly or round a cycle.
Function-level imports count too (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "python" / "evoforge"

# Floors from the bottom up, as in ARCHITECTURE.md; a module belongs to the floor of its longest
# listed prefix ("evoforge.layers" covers evoforge.layers.quant).
FLOORS: list[tuple[str, list[str]]] = [
    ("base", ["evoforge.errors", "evoforge._checks", "evoforge._native", "evoforge._core", "evoforge._cuda"]),
    ("ops", ["evoforge.pareto", "evoforge._pareto_cuda", "evoforge.hashing", "evoforge.random",
             "evoforge.variation", "evoforge.mutation", "evoforge.crossover", "evoforge.selection",
             "evoforge.deepga", "evoforge.solvers", "evoforge.kl", "evoforge.layers", "evoforge.merging",
             "evoforge.interpreter"]),
    ("engines", ["evoforge.cache", "evoforge.search", "evoforge.plot"]),
    ("applications", ["evoforge.compress", "evoforge.merge", "evoforge.programs",
                      "evoforge.neuro"]),
    ("backends", ["evoforge.evaluate"]),
    ("top", ["evoforge", "evoforge.cli", "evoforge.bench", "evoforge.dashboard"]),
]

# Imports that break the rules on purpose, each with its reason and the release that removes it.
ALLOWED: dict[tuple[str, str], str] = {
    ("evoforge.layers.model", "evoforge.compress.export"):
        "layers.apply(model, run_dir) deprecated in 0.2 (use evoforge.compress.pack); removed in 0.3",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _floor(module: str) -> int:
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    if best is None:
        raise AssertionError(f"{module} is on no floor: add it to FLOORS here and to ARCHITECTURE.md")
    return best


def _imports(path: Path, module: str) -> set[str]:
    """evoforge modules imported by ``path`` (absolute or relative, anywhere in the file)."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "evoforge")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "evoforge":
                continue
            # "from . import x" may name a submodule: depend on it, not on the package's __init__
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.add(sub if _exists(sub) else target)
    out.discard(module)
    return out


def _exists(module: str) -> bool:
    if any(module in prefixes for _, prefixes in FLOORS):  # also the compiled _core and _cuda
        return True
    p = PKG.parent.joinpath(*module.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p, _module_name(p)) for p in sorted(PKG.rglob("*.py"))}


def test_every_module_is_on_a_floor():
    for module in _graph():
        _floor(module)


def test_no_import_from_a_higher_floor():
    bad = []
    for module, deps in _graph().items():
        for dep in sorted(deps):
            if _floor(dep) > _floor(module) and (module, dep) not in ALLOWED:
                bad.append(f"{module} ({FLOORS[_floor(module)][0]}) imports {dep} ({FLOORS[_floor(dep)][0]})")
    assert not bad, "imports of a higher floor:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = _graph()
    # a package imports its own submodules through __init__; only cycles between modules count
    edges = {m: {d for d in deps if d in graph and not m.startswith(d + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(edges[m]):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("limit", [500])
def test_no_module_over_the_line_limit(limit):
    long = [f"{p.relative_to(PKG)}: {n}" for p in sorted(PKG.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > limit]
    assert not long, f"modules over {limit} lines (split them by job):\n" + "\n".join(long)


def test_the_checker_sees_violations(tmp_path):
    # the rules are only as good as the parser: a relative, a lazy and an absolute import all count
    f = tmp_path / "x.py"
    f.write_text("from ..compress import pipeline\n"
                 "def g():\n    from evoforge.evaluate import open_backend\n"
                 "import evoforge.cli\n")
    deps = _imports(f, "evoforge.layers.x")
    assert {"evoforge.compress.pipeline", "evoforge.evaluate", "evoforge.cli"} <= deps
