"""The imports tell the layers: plugins use the core's public API only, and the core uses no plugin.

Read from the source with ``ast`` (every ``import`` and ``from … import``,
in functions and under ``TYPE_CHECKING`` too), so a lazy import counts as
much as one at the top of a module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(path.name for path in (ROOT / "plugins").iterdir() if (path / "__init__.py").is_file())
#: What a plugin may import from the core: the package and its public submodules.
PUBLIC_CORE = frozenset(
    {"flowengine", "flowengine.cli", "flowengine.hookspecs", "flowengine.serving", "flowengine.testing"}
)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``; relative imports stay in the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            if node.module == "flowengine":  # `from flowengine import _plugins` names a private module
                for alias in node.names:
                    if alias.name.startswith("_"):
                        yield node.lineno, f"flowengine.{alias.name}"


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def _problem(plugin: str, module: str) -> str | None:
    """Why a module of ``plugin`` may not import ``module`` (None when it may)."""
    top = module.split(".")[0]
    if top in PLUGINS and top != plugin:
        return f"imports another plugin ({top})"
    if top == "flowengine" and module not in PUBLIC_CORE:
        if any(part.startswith("_") for part in module.split(".")):
            return f"imports the core's private {module}"
        return f"imports {module}, which is not a public module of flowengine"
    return None


@pytest.mark.parametrize("plugin", PLUGINS)
def test_a_plugin_imports_only_the_public_core_and_itself(plugin: str) -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {why}"
        for path in _modules(ROOT / "plugins" / plugin)
        for line, module in _imports(path)
        if (why := _problem(plugin, module)) is not None
    ]
    assert not found, "\n".join(found)


def test_the_core_imports_no_plugin() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in _modules(ROOT / "flowengine")
        for line, module in _imports(path)
        if module.split(".")[0] in PLUGINS
    ]
    assert not found, "\n".join(found)


def test_the_check_sees_what_it_must_refuse(tmp_path: Path) -> None:
    """The walk is not vacuous: it finds each kind of import it exists to refuse."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from flowengine._callbacks import parse_callback\n"
        "from flowengine import _plugins\n"
        "def later():\n"
        "    from flowengine_sqlite import default_url\n"
        "import flowengine_cli.common\n",
        encoding="utf-8",
    )
    problems = [_problem("flowengine_web", module) for _line, module in _imports(bad)]
    assert sorted(p for p in problems if p) == [
        "imports another plugin (flowengine_cli)",
        "imports another plugin (flowengine_sqlite)",
        "imports the core's private flowengine._callbacks",
        "imports the core's private flowengine._plugins",
    ]
    assert {"flowengine_cli", "flowengine_sandbox", "flowengine_web", "flowengine_batch"} <= set(PLUGINS)
