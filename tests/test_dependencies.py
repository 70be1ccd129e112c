"""The declared dependencies: every import is declared, every lower bound is the tested floor.

CI installs ``.ci/floors.txt`` (each lower bound of ``pyproject.toml`` pinned exactly) into a
second fresh environment and runs part of the suite there (see ``.ci/run``); these checks keep
that file and the declarations in step.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS = ROOT / ".ci" / "floors.txt"
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(extras: bool = True) -> dict[str, str]:
    """The package's requirements (and its test extra's), by canonical name: the specifier."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + (project["optional-dependencies"]["test"] if extras else [])
    requirements = {}
    for line in lines:
        name, specifier = REQUIREMENT.match(line).groups()
        requirements[_canonical(name)] = specifier.replace(" ", "")
    return requirements


def _floors() -> dict[str, str]:
    pins = {}
    for line in FLOORS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_canonical(name)] = version
    return pins


def test_every_requirement_has_a_lower_bound_pinned_in_the_floors():
    floors = _floors()
    for name, specifier in _requirements().items():
        bounds = specifier.split(",")
        lower = [bound.removeprefix(">=") for bound in bounds if bound.startswith(">=")]
        assert len(lower) == 1, f"{name}: no single lower bound in {specifier!r}"
        assert name in floors, f"{name} is not pinned in {FLOORS.name}"
        assert floors[name] == lower[0] or floors[name].startswith(lower[0] + "."), (
            f"{name}: {FLOORS.name} pins {floors[name]}, pyproject.toml says >={lower[0]}"
        )


def _third_party_imports() -> set[str]:
    """Top-level modules the package imports that are neither its own nor the standard library."""
    modules = set()
    for path in (ROOT / "tfbp_dask").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return {m for m in modules if m != "tfbp_dask" and m not in sys.stdlib_module_names}


def test_every_imported_library_is_declared():
    distributions = importlib.metadata.packages_distributions()
    declared = set(_requirements(extras=False))
    undeclared = {
        module
        for module in _third_party_imports()
        if not {_canonical(d) for d in distributions.get(module, [module])} & declared
    }
    assert not undeclared
