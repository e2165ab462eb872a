"""The checklist itself: every check of docs/security.md has a test here that is expected to pass.

Tests are named ``test_sec<N>_…`` after the check they prove, so ``pytest -k sec13`` runs
check 13 (``-k sec1_`` for check 1 alone: ``sec1`` also matches 10-19). This module reads the
numbered list under "## The checklist" in ``docs/security.md`` (the project's own, so a clone
needs nothing beside it) and the test names of ``tests/security/`` (without importing them),
and fails on a gap in the numbers, on a check without a passing test, on a test naming a
number the list does not have, and on a test named otherwise.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKLIST = HERE.parents[1] / "docs" / "security.md"
_NAME = re.compile(r"test_sec(\d+)_\w+")

#: Checks whose work is under way on other branches; the lead empties this as each lands.
#: A number here that has a passing test fails the checklist, so the set cannot go stale.
PENDING: set[int] = set()


def _checks() -> set[int]:
    """The numbers of the list under "## The checklist" in docs/security.md."""
    text = CHECKLIST.read_text(encoding="utf-8")
    section = text.split("\n## The checklist\n", 1)[1].split("\n## ", 1)[0]
    return {int(n) for n in re.findall(r"^(\d+)\. ", section, re.MULTILINE)}


def _tests() -> list[tuple[str, str, bool]]:
    """(module, test name, marked xfail) for every test function of this folder."""
    found = []
    for module in sorted(HERE.glob("test_*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        xfail_names = {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign) and "xfail" in ast.unparse(node.value)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
                marks = [ast.unparse(d) for d in node.decorator_list]
                xfail = any("xfail" in m or m in xfail_names for m in marks)
                found.append((module.name, node.name, xfail))
    return found


def test_security_checklist_has_a_passing_test_for_every_check() -> None:
    checks = _checks()
    assert len(checks) >= 34, f"docs/security.md's checklist lost checks: {sorted(checks)}"
    assert checks == set(range(1, max(checks) + 1)), f"docs/security.md's checks have a gap: {sorted(checks)}"
    passing: dict[int, list[str]] = defaultdict(list)
    misnamed, unknown = [], []
    for module, name, xfail in _tests():
        if name == "test_security_checklist_has_a_passing_test_for_every_check":
            continue
        match = _NAME.fullmatch(name)
        if match is None:
            misnamed.append(f"{module}::{name}")
        elif int(match.group(1)) not in checks:
            unknown.append(f"{module}::{name}")
        elif not xfail:
            passing[int(match.group(1))].append(name)
    assert not misnamed, f"tests not named test_sec<N>_…: {misnamed}"
    assert not unknown, f"tests naming a check docs/security.md does not have: {unknown}"
    missing = sorted(checks - set(passing) - PENDING)
    assert not missing, f"checks without a test expected to pass: {missing}"
    landed = sorted(PENDING & set(passing))
    assert not landed, f"checks in PENDING that have their tests now: take {landed} out of PENDING"
