"""The package's import graph: cycles, upward imports, long functions and long modules.

    python tools/layers.py            # prints the report; exit 1 if a rule is broken
    python tools/layers.py --dot      # the graph for graphviz

ARCHITECTURE.md draws the layers; :data:`LAYERS` is the same list, bottom first. A module may
import modules of its own layer or below, never above (tests/test_architecture.py runs this).
Imports inside functions count too: a lazy import hides a cycle, it does not remove it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dcgan_hf"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 450

# bottom first; a name matches a module or every module of a subpackage
LAYERS: list[tuple[str, list[str]]] = [
    ("foundations", ["_lazy", "_moved", "version", "errors", "files", "finite", "bounded_json", "layout", "devices", "images",
                     "latent", "latent_token", "scores", "arithmetic", "data.decoding"]),
    ("persistence", ["hub.client", "hub.card", "persistence"]),
    ("models", ["models", "sampling", "directions", "epoch_history"]),
    ("library", ["projection", "completion", "photos", "metrics", "export", "legacy", "data", "hub", "revisions",
                 "evaluate", "steering"]),
    ("training", ["training"]),
    ("serving", ["serving"]),
    ("ui", ["ui"]),
    ("entry points", ["__init__", "__main__"]),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int:
    best, found = -1, -1
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), index
    if found < 0:
        raise SystemExit(f"tools/layers.py: dcgan_hf.{module} is in no layer; add it to LAYERS")
    return found


def imports(path: Path, module: str) -> set[str]:
    """dcgan_hf modules ``path`` imports (relative or absolute, at any depth)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if module == "__init__":
        package = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.split(".")[0] == "dcgan_hf":
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:  # "from . import x" may name a module
                candidate = ".".join([*target, alias.name])
                found.add(candidate if known(candidate) else ".".join(target))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "dcgan_hf":
                    found.add(".".join(alias.name.split(".")[1:]))
    resolved = {resolve(item) for item in found}
    return {name or "__init__" for name in resolved if (name or "__init__") != module and name != module}


def known(name: str) -> bool:
    return (PACKAGE / (name.replace(".", "/") + ".py")).is_file() or (PACKAGE / name.replace(".", "/")).is_dir()


def resolve(name: str) -> str:
    return name if name and known(name) else ".".join(name.split(".")[:-1]) if "." in name else name


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports(path, module_name(path)) for path in sorted(PACKAGE.rglob("*.py"))}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node), on_stack.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    return found


def upward(edges: dict[str, set[str]]) -> list[str]:
    return [f"dcgan_hf.{source} ({LAYERS[layer_of(source)][0]}) imports dcgan_hf.{target} "
            f"({LAYERS[layer_of(target)][0]})"
            for source, targets in sorted(edges.items()) for target in sorted(targets)
            if layer_of(target) > layer_of(source) and not is_package_init(source, target)]


def is_package_init(source: str, target: str) -> bool:
    """A subpackage's __init__ names what its modules export (lazily): not an import of a layer."""
    return (PACKAGE / source.replace(".", "/") / "__init__.py").is_file() and target.startswith(source + ".")


def long_functions() -> list[str]:
    found = []
    for path in sorted([*PACKAGE.rglob("*.py"), ROOT / "app.py", ROOT / "train.py"]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines")
    return found


def long_modules() -> list[str]:
    return [f"{path.relative_to(ROOT)}: {lines} lines"
            for path in sorted([*PACKAGE.rglob("*.py"), ROOT / "app.py", ROOT / "train.py"])
            if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES]


def unplaced(edges: dict[str, set[str]]) -> list[str]:
    """Modules no layer names (each must have a place in ARCHITECTURE.md)."""
    missing = []
    for module in edges:
        try:
            layer_of(module)
        except SystemExit:
            missing.append(f"dcgan_hf.{module}")
    return missing


def main(argv: list[str]) -> int:
    edges = graph()
    if "--dot" in argv:
        print("digraph dcgan_hf {\n  rankdir=BT;")
        for source, targets in sorted(edges.items()):
            for target in sorted(targets):
                print(f'  "{source}" -> "{target}";')
        print("}")
        return 0
    problems = {"modules in no layer": unplaced(edges),
                "import cycles": [" ↔ ".join(c) for c in cycles(edges)], "upward imports": upward(edges),
                f"functions over {MAX_FUNCTION_LINES} lines": long_functions(),
                f"modules over {MAX_MODULE_LINES} lines": long_modules()}
    for title, items in problems.items():
        print(f"{title}: {len(items)}")
        for item in items:
            print(f"  {item}")
    return 1 if any(problems.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
