"""The drawing in docs/architecture.md matches the imports: no module of flowengine/ imports upward.

Also the size bar of the design: no module of flowengine/ or plugins/ over 500 lines, no function over 60.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flowengine"


def _layers() -> dict[str, int]:
    """module -> layer number, from the table in docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    layers: dict[str, int] = {}
    for number, cells in re.findall(r"^\| (\d) \w+ \| (.+) \|$", text, re.MULTILINE):
        for name in re.findall(r"`([\w]+)`", cells):
            layers[name] = int(number)
    return layers


def _flowengine_imports(path: Path) -> set[str]:
    """The flowengine modules ``path`` imports (at any depth: lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "flowengine":
                continue
            if len(parts) > 1:
                found.add(parts[1])
            else:  # `from flowengine import _plugins` names a module; `import X` names the API
                found |= {a.name for a in node.names if a.name.startswith("_") or a.name == "hookspecs"}
                if not any(a.name.startswith("_") or a.name == "hookspecs" for a in node.names):
                    found.add("__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "flowengine":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


def _modules() -> dict[str, list[Path]]:
    """Each module of flowengine/ (a file, or a subpackage as one) and its files."""
    found = {p.stem: [p] for p in PACKAGE.glob("*.py")}
    for package in PACKAGE.iterdir():
        if (package / "__init__.py").is_file():
            found[package.name] = sorted(package.rglob("*.py"))
    return found


def test_every_module_is_in_the_drawing() -> None:
    layers = _layers()
    modules = set(_modules())
    assert modules - set(layers) == set(), "modules missing from docs/architecture.md's table"
    assert set(layers) - modules == set(), "docs/architecture.md names modules that do not exist"


def test_no_module_imports_a_higher_layer() -> None:
    layers = _layers()
    climbing = []
    for module, paths in sorted(_modules().items()):
        own = layers[module]
        for imported in {name for path in paths for name in _flowengine_imports(path)} - {module}:
            if imported in layers and layers[imported] > own:
                climbing.append(f"{module} (layer {own}) imports {imported} (layer {layers[imported]})")
    assert not climbing, climbing


def test_the_core_layer_does_no_io() -> None:
    """Layer 2 is pure: it imports no socket, file, clock, event-loop machinery nor randomness."""
    forbidden = {
        *("asyncio", "socket", "time", "os", "pathlib", "threading", "subprocess", "httpx", "aiohttp"),
        *("secrets", "random", "uuid"),  # the driver draws every random value (_entropy)
    }
    layers = _layers()
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        if layers[path.stem] != 2:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            found += [f"{path.stem} imports {n}" for n in names if n.split(".")[0] in forbidden]
    assert not found, found


def test_modules_and_functions_stay_small() -> None:
    """The bar covers the core and every plugin alike: 500 lines a module, 60 a function."""
    too_big = []
    plugins = sorted((ROOT / "plugins").rglob("*.py"))
    for path in sorted(path for paths in _modules().values() for path in paths) + plugins:
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 500:
            too_big.append(f"{path.name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 60:
                    too_big.append(f"{path.name}:{node.lineno} {node.name}: {length} lines")
    assert not too_big, too_big
