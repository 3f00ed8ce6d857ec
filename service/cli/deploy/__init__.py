"""`pgcue deploy`: the deployment files, generated from the job-type registry so that they
cannot drift from it (one worker Deployment or Job per type, its resources, its KEDA
query): the Kubernetes tree (ops/k8s/), the compose file (ops/compose.yaml) and the Prometheus
configurations of `make run` and of compose (ops/prometheus/). A test fails when the
committed files differ from what this writes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pgcue.cli.deploy import compose, k8s, prometheus
from pgcue.cli.deploy.plan import WorkerPlan

TARGETS = ("k8s", "compose", "prometheus")
K8S_DIR = "ops/k8s"
# Generated files of the tree (others there, such as schemas/, are left alone); a stale
# worker file (a type that is gone) is removed.
K8S_OWNED = ("*.yaml", "workers/*.yaml")


@dataclass(frozen=True)
class Options:
    schema: str = "pgcue"
    image: str = "pgcue"
    tag: str = "0.1.0"


def plans(specs: list[object], schema: str) -> list[WorkerPlan]:
    return [WorkerPlan(spec, schema) for spec in specs]  # type: ignore[arg-type]


def generate(
    target: str, worker_plans: list[WorkerPlan], options: Options, make_run_types: list[str]
) -> dict[str, str]:
    """{path relative to the root: text} for one target."""
    if target == "k8s":
        tree = k8s.tree(worker_plans, schema=options.schema, image=options.image, tag=options.tag)
        return {f"{K8S_DIR}/{path}": text for path, text in tree.items()}
    if target == "compose":
        return {
            "ops/compose.yaml": compose.compose(worker_plans, schema=options.schema),
            "ops/prometheus/compose.yml": prometheus.compose(worker_plans),
        }
    if target == "prometheus":
        return {"ops/prometheus/prometheus.yml": prometheus.make_run(make_run_types)}
    raise ValueError(f"unknown deploy target {target!r}; known: {', '.join(TARGETS)}")


def stale(root: Path, files: dict[str, str], target: str) -> list[str]:
    """Files the target owns under `root` that it no longer generates."""
    if target != "k8s":
        return []
    base = root / K8S_DIR
    owned = {str(p.relative_to(root)) for pattern in K8S_OWNED for p in base.glob(pattern)}
    return sorted(owned - set(files))


def differences(root: Path, files: dict[str, str], target: str) -> list[str]:
    """What writing would change: 'changed X', 'missing X', 'stale X'."""
    out = []
    for path, text in files.items():
        where = root / path
        if not where.exists():
            out.append(f"missing {path}")
        elif where.read_text() != text:
            out.append(f"changed {path}")
    out += [f"stale {path}" for path in stale(root, files, target)]
    return out


def write(root: Path, files: dict[str, str], target: str) -> list[str]:
    """Write the files (and remove stale ones); returns what changed."""
    changed = differences(root, files, target)
    for path, text in files.items():
        where = root / path
        where.parent.mkdir(parents=True, exist_ok=True)
        if not where.exists() or where.read_text() != text:
            where.write_text(text)
    for path in stale(root, files, target):
        (root / path).unlink()
    return changed


def table(worker_plans: list[WorkerPlan]) -> str:
    """The per-type figures as a Markdown table (docs/deploy.md holds this, checked by a test)."""
    rows = [
        "| type | runs as | jobs per pod (target) | pods | cooldown | shutdown grace | memory request / limit |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in worker_plans:
        kind = "ScaledJob" if p.as_job else "Deployment"
        rows.append(
            f"| {p.name} | {kind} | {p.per_pod} | {p.min_replicas}–{p.max_replicas} | "
            f"{'—' if p.as_job else f'{p.cooldown} s'} | {p.shutdown_grace} s | "
            f"{p.memory_mb} / {p.memory_limit_mb} MiB |"
        )
    return "\n".join(rows) + "\n"
