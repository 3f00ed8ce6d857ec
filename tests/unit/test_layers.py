"""`make lint` refuses an import against the layers: the check runs on the installed tree
(ops/dev/lint.py), and a module planted in the core that imports the API breaks it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("pgcue_lint", ROOT / "ops" / "dev" / "lint.py")
assert _spec and _spec.loader
lint = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lint)


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layers_hold_and_a_wrong_import_breaks_them(tmp_path: Path) -> None:
    tree = lint.build_tree(tmp_path / "tree")
    clean = _lint_imports(tree)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    (tree / "pgcue" / "core" / "upside_down.py").write_text("from pgcue.api import app  # the core reaching up\n")
    (tree / "pgcue" / "api" / "shortcut.py").write_text("from pgcue.core import statements  # SQL past the facade\n")
    (tree / "pgcue" / "workers" / "runtime" / "driver.py").write_text("import asyncpg  # a driver above the core\n")
    broken = _lint_imports(tree)
    out = broken.stdout + broken.stderr
    assert broken.returncode != 0
    assert "pgcue.core.upside_down -> pgcue.api" in out
    assert "pgcue.api.shortcut -> pgcue.core.statements" in out
    assert "pgcue.workers.runtime.driver -> asyncpg" in out


def test_paths_in_the_tree_are_reported_as_source_paths() -> None:
    assert lint.to_source("pgcue/core/x.py:3: error") == "service/core/x.py:3: error"
    assert lint.to_source("pgcue/workers/runtime/y.py:1") == "workers/runtime/y.py:1"
    assert lint.to_source("see pgcue/migrations/0001_core.sql") == "see migrations/0001_core.sql"
