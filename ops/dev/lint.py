"""`make lint`'s type and layer checks over the installed import names.

The card's folders are mapped under one import name (service/ is `pgcue`, workers/ is
`pgcue.workers`, migrations/ is `pgcue.migrations`: pyproject.toml's package-dir). The
editable install resolves that mapping with an import hook, which mypy and import-linter
do not run, so this builds the package as it is installed (a tree of symlinks to the
sources, in .venv/typecheck), checks it, and prints every path as its source path.

    python ops/dev/lint.py [--tree DIR]    mypy (--strict over pgcue.client; bench/ too), then
                                           import-linter; exit non-zero on any finding
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Installed location inside the tree -> source folder; the longest prefix first.
MAPPING = (("pgcue/workers", "workers"), ("pgcue/migrations", "migrations"), ("pgcue", "service"))


def build_tree(tree: Path, root: Path = ROOT) -> Path:
    """A symlink tree of the installed package under `tree`; returns the tree."""
    shutil.rmtree(tree, ignore_errors=True)
    for installed, source in sorted(MAPPING, key=lambda m: len(m[0])):
        for folder, dirs, files in os.walk(root / source):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            rel = Path(folder).relative_to(root / source)
            target = tree / installed / rel
            target.mkdir(parents=True, exist_ok=True)
            for name in files:
                if name.endswith((".py", ".pyi", ".typed", ".sql")):
                    (target / name).symlink_to(Path(folder) / name)
    return tree


def to_source(text: str) -> str:
    """Rewrite paths inside the tree (pgcue/...) as source paths (service/..., workers/...)."""
    pattern = re.compile(r"(?<![\w/.])(" + "|".join(re.escape(m[0]) for m in MAPPING) + r")/")
    return pattern.sub(lambda m: dict(MAPPING)[m.group(1)] + "/", text)


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> int:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    sys.stdout.write(to_source(proc.stdout))
    sys.stderr.write(to_source(proc.stderr))
    return proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT / ".venv" / "typecheck")
    parser.add_argument("--only", choices=["mypy", "imports"])
    args = parser.parse_args()
    tree = build_tree(args.tree)
    env = dict(os.environ, MYPYPATH=str(tree), PYTHONPATH=str(tree))
    bindir = Path(sys.executable).parent
    failed = 0
    if args.only in (None, "mypy"):
        failed |= run([str(bindir / "mypy"), "--config-file", str(ROOT / "pyproject.toml"), "-p", "pgcue"], tree, env)
        # The client is a library others type-check against: mypy --strict over it (what
        # it imports is checked above, not reported twice here).
        strict = ["--strict", "--follow-imports=silent", "-p", "pgcue.client"]
        failed |= run([str(bindir / "mypy"), "--config-file", str(ROOT / "pyproject.toml"), *strict], tree, env)
        # The benchmarks are not shipped, but their figures are what the docs cite: typed too.
        bench = ["--follow-imports=silent", "bench"]
        failed |= run([str(bindir / "mypy"), "--config-file", str(ROOT / "pyproject.toml"), *bench], ROOT, env)
    if args.only in (None, "imports"):
        config = ROOT / "pyproject.toml"
        failed |= run([str(bindir / "lint-imports"), str(config), "--no-cache"], tree, env)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
