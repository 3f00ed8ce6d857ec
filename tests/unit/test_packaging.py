"""The distribution ships every package of the source tree (a package missing from
pyproject.toml's list would be missing from the wheel, and only an installed wheel
would show it: tests/package/test_wheel.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_source_package_is_in_the_distribution() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config["package-dir"]  # import name -> folder
    found = set()
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            dotted = ".".join([name, *rel.parts]) if rel.parts else name
            if not any(dotted.startswith(other + ".") and other != name for other in mapping if other.startswith(name)):
                found.add(dotted)
    assert found == set(config["packages"]), sorted(found ^ set(config["packages"]))
