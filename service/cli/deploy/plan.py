"""What a deployment of one job type's workers is, worked out from its registry settings
once, so the Kubernetes tree, the compose file and the docs say the same thing.

Every figure here has its reason beside it; docs/deploy.md explains them to a reader."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pgcue.workers.runtime.registry import TypeSpec

METRICS_PORT = 9101  # every worker container's --metrics-port (a container has its own)
API_PORT = 8000
DEFAULT_MAX_REPLICAS = 10  # a type with no fleet-wide limit: at most this many pods
DEFAULT_MEMORY_MB = 256  # a type with no memory budget (echo, sleep)
GRACE_CAP_SECONDS = 300  # the longest a scaled-in pod waits for its running jobs
GRACE_MARGIN_SECONDS = 30  # the pod's termination grace beyond the worker's own
IDLE_EXIT_SECONDS = 60  # a Job's pod that found nothing to claim exits after this
POLLING_SECONDS = 15  # how often KEDA runs the query


@dataclass(frozen=True)
class WorkerPlan:
    spec: TypeSpec
    schema: str = "pgcue"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def resource_name(self) -> str:
        """pgcue-worker-<type>: a DNS-1123 name (type names are lower-case words)."""
        return "pgcue-worker-" + "".join(c if c.isalnum() else "-" for c in self.spec.name.lower()).strip("-")

    @property
    def secret_name(self) -> str:
        """pgcue-<type>: the Secret holding what the type reads (TypeSpec.secret_files)."""
        return self.resource_name.replace("pgcue-worker-", "pgcue-", 1)

    @property
    def as_job(self) -> bool:
        return self.spec.deploy_as == "job"

    @property
    def per_pod(self) -> int:
        """Jobs one pod runs at once: the type's concurrency, KEDA's targetQueryValue."""
        return self.spec.concurrency

    @property
    def max_replicas(self) -> int:
        """A fleet-wide limit needs no more pods than it lets run; otherwise a cap."""
        if self.spec.global_concurrency:
            return max(1, math.ceil(self.spec.global_concurrency / self.per_pod))
        return DEFAULT_MAX_REPLICAS

    @property
    def min_replicas(self) -> int:
        """0: every type cold-starts. Its work is in the queue before any worker exists
        (KEDA counts it there), and the one process that must always run (the
        maintenance leader: rescue, prune, cron) is its own Deployment."""
        return 0

    @property
    def shutdown_grace(self) -> int:
        """PGCUE_SHUTDOWN_GRACE of a pod: how long a stopped pod lets running jobs finish
        before it gives them back (without charging an attempt). A Deployment's pods are
        stopped by scale-in: they wait at most GRACE_CAP_SECONDS, or the type's timeout
        when shorter. A Job's pod is stopped only by an eviction or a deletion: it gets
        the whole timeout, since giving back hours of render is the worse loss."""
        if self.as_job:
            return self.spec.timeout_seconds
        return min(self.spec.timeout_seconds, GRACE_CAP_SECONDS)

    @property
    def termination_grace(self) -> int:
        """terminationGracePeriodSeconds: longer than the worker's own grace, so the
        kubelet's SIGKILL never cuts the give-back short."""
        return self.shutdown_grace + GRACE_MARGIN_SECONDS

    @property
    def cooldown(self) -> int:
        """KEDA's cooldownPeriod (seconds after the last non-zero signal before 0 pods): a
        sixth of the type's timeout, between 60 s and 30 min. Running jobs are part of the
        signal, so this never cuts a job short; it only keeps a warm pod for the next job
        of a type whose jobs come in bursts, longer for the types whose jobs are long."""
        return max(60, min(1800, self.spec.timeout_seconds // 6))

    @property
    def memory_mb(self) -> int:
        return self.spec.memory_mb or DEFAULT_MEMORY_MB

    @property
    def memory_limit_mb(self) -> int:
        """The container's limit: the budget plus a quarter. The worker caps its own
        address space at the budget (RLIMIT_AS); the media tools it starts inherit that
        cap each, so together they may hold more than one budget."""
        return self.memory_mb + self.memory_mb // 4

    @property
    def cpu_millis(self) -> int:
        """A request of a quarter core per concurrent job (a render's ffmpeg: a whole
        one); no limit, so a pod may use what the node has spare."""
        return 1000 * self.per_pod if self.as_job else 250 * self.per_pod

    def worker_args(self) -> list[str]:
        args = ["worker", "--type", self.spec.name, "--no-maintenance"]
        if self.as_job:
            args += ["--max-jobs", str(self.per_pod), "--idle-exit", str(IDLE_EXIT_SECONDS)]
        return [*args, "--metrics-port", str(METRICS_PORT), "--metrics-host", "0.0.0.0"]

    def keda_query(self) -> str:
        """The replica signal: the type's running jobs plus its runnable ones (queued, due,
        neither the type nor the channel paused). KEDA asks for ceil(signal /
        targetQueryValue) pods; the LIMIT stops counting past what maxReplicaCount pods
        can run, so a deep backlog costs the query no more than that."""
        s, t = self.schema, "'" + self.spec.name.replace("'", "''") + "'"
        return (
            "SELECT count(*) FROM (\n"
            f"  SELECT 1 FROM {s}.jobs WHERE type = {t} AND state = 'running'\n"
            "  UNION ALL\n"
            f"  SELECT 1 FROM {s}.jobs j\n"
            f"  WHERE j.type = {t} AND j.state = 'queued' AND j.run_at <= now()\n"
            f"    AND NOT EXISTS (SELECT 1 FROM {s}.job_types p WHERE p.name = j.type AND p.paused)\n"
            f"    AND NOT EXISTS (SELECT 1 FROM {s}.paused_channels c WHERE c.channel_id = j.channel_id)\n"
            f"  LIMIT {self.max_replicas * self.per_pod}\n"
            ") AS signal"
        )

    def replicas_for(self, signal: float) -> int:
        """What KEDA asks for when the query returns `signal` (for the tests and docs):
        ceil(signal / target), within min and max."""
        if signal <= 0:
            return self.min_replicas
        return max(self.min_replicas, min(self.max_replicas, math.ceil(signal / self.per_pod)))
