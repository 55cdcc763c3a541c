"""The package's shape: imports run one way (docs/architecture.md), no cycle, no module over ~350 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fruitfeat"

#: Layers, lowest first: a module may import from its own layer or a lower one, never a higher one.
LAYERS = [
    ("errors", "io.uris"),
    ("config",),
    ("featurize", "reduce"),
    ("io",),
    ("recognition", "session", "sample_data", "phone_photos", "store"),
    ("manifest",),
    ("pipeline", "cloud"),
    ("cli",),
]
MAX_LINES = 350


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


def _imports(path: Path) -> set[str]:
    """fruitfeat modules imported anywhere in the file (function-level imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fruitfeat"):
            for alias in node.names:  # `from fruitfeat.io import storage` imports the module io.storage
                found.add(f"{node.module}.{alias.name}" if _is_module(f"{node.module}.{alias.name}") else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fruitfeat"))
    return {name.removeprefix("fruitfeat").lstrip(".") for name in found} - {""}


def _is_module(dotted: str) -> bool:
    """Whether ``dotted`` names a module (``from fruitfeat.io import storage``) rather than an attribute."""
    relative = Path(*dotted.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative / "__init__.py").is_file()


def _layer(module: str) -> int:
    for rank, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return rank
    raise AssertionError(f"fruitfeat.{module} belongs to no layer: add it to LAYERS and docs/architecture.md")


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_imports_run_downwards_only():
    upward = [
        f"fruitfeat.{module} imports fruitfeat.{target}"
        for module, targets in _graph().items()
        for target in targets
        if module and target and _layer(target) > _layer(module)
    ]
    assert upward == []


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target in graph and state.get(target) is None:
                visit(target, path + [target])
        state[node] = 2

    for module in sorted(graph):
        if state.get(module) is None:
            visit(module, [module])
    assert cycles == []


def test_every_module_is_short():
    long = {_module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
