"""The house's layers hold: preflight_core imports neither checks nor fetchers; fetchers import only preflight_core;
one module of checks imports fetchers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.checkrun import PROJECT


def imported_packages(path: Path) -> set[str]:
    """Top-level project packages a module imports (at module level or inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & {"preflight_core", "checks", "fetchers", "tests"}


def modules(package: str) -> list[Path]:
    return sorted((PROJECT / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules("preflight_core"), ids=lambda p: p.name)
def test_preflight_core_imports_neither_checks_nor_fetchers(path):
    assert imported_packages(path) <= {"preflight_core"}, f"{path.relative_to(PROJECT)} reaches out of preflight_core"


@pytest.mark.parametrize("path", modules("fetchers"), ids=lambda p: p.name)
def test_fetchers_import_only_preflight_core(path):
    assert imported_packages(path) <= {"preflight_core", "fetchers"}, f"{path.relative_to(PROJECT)} imports checks"


def test_one_module_of_checks_imports_fetchers():
    importers = [p.name for p in modules("checks") if "fetchers" in imported_packages(p)]
    assert importers == ["fetching.py"]


def test_the_hooks_file_fits_on_a_screen():
    assert len((PROJECT / "checks" / "plugin.py").read_text().splitlines()) <= 250


def test_a_wrong_way_import_is_caught(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from checks.imagenet import scan_val\n")
    assert imported_packages(bad) == {"checks"}


def test_the_floors_ci_installs_are_the_lower_bounds_of_requirements_txt():
    """requirements-floor.txt pins each `>=` of requirements.txt that the light CI run tests (torch aside)."""
    import re

    def bounds(name: str, op: str) -> dict[str, str]:
        text = (PROJECT / name).read_text()
        found = re.findall(rf"^([A-Za-z][\w.-]*)\s*{op}\s*([\d.]+)", text, re.M)
        return {name.lower(): re.sub(r"(\.0)+$", "", version) for name, version in found}  # 9.0.0 == 9.0

    floors, lower = bounds("requirements-floor.txt", "=="), bounds("requirements.txt", ">=")
    assert floors and all(lower.get(name) == version for name, version in floors.items()), (floors, lower)
    heavy = {"torch", "torchvision", "transformers", "open_clip_torch", "safetensors", "tokenizers"}
    assert set(lower) - heavy <= set(floors), "a light dependency whose floor CI does not install"
