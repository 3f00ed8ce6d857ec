"""The deployment files are what the registry generates: `pgcue deploy all --check` and a
byte-for-byte comparison with a fresh generation (a new or changed job type without
`make deploy-files` fails here), the YAML writer reads back as written, and the
Prometheus configurations match the processes that actually run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgcue.cli import deploy
from pgcue.cli.deploy.emit import dump
from pgcue.cli.supervisor import METRICS_BASE_PORT, _workers
from tests.conftest import ROOT
from tests.deploy.helpers import builtin_types

GENERATED = ["ops/compose.yaml", "ops/prometheus/compose.yml", "ops/prometheus/prometheus.yml"]


def generate(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgcue.cli", "deploy", "all", "--root", str(root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("PGCUE_")},  # the defaults
    )


def test_the_committed_files_are_what_the_registry_generates(tmp_path: Path) -> None:
    done = generate(tmp_path)
    assert done.returncode == 0, done.stderr
    fresh = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    committed_tree = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "ops" / "k8s").rglob("*.yaml") if "schemas" not in p.parts
    )
    assert [f for f in fresh if f.startswith("ops/k8s/")] == committed_tree, "a worker file is missing or stale"
    stale = [f for f in fresh if (tmp_path / f).read_text() != (ROOT / f).read_text()]
    assert stale == [], f"run `make deploy-files`: {stale} differ from what the registry generates"
    assert set(GENERATED) <= set(fresh)


def test_deploy_check_fails_on_a_drifted_tree_and_names_the_file(tmp_path: Path) -> None:
    assert generate(tmp_path).returncode == 0
    tts = tmp_path / "ops" / "k8s" / "workers" / "tts.yaml"
    tts.write_text(tts.read_text().replace('targetQueryValue: "2"', 'targetQueryValue: "5"'))
    (tmp_path / "ops" / "k8s" / "workers" / "gone.yaml").write_text("# a type that was removed\n")
    check = subprocess.run(
        [sys.executable, "-m", "pgcue.cli", "deploy", "all", "--root", str(tmp_path), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 1
    assert "changed ops/k8s/workers/tts.yaml" in check.stderr
    assert "stale ops/k8s/workers/gone.yaml" in check.stderr
    rewrite = generate(tmp_path)
    assert "rewrote ops/k8s/workers/tts.yaml" in rewrite.stdout
    assert not (tmp_path / "ops" / "k8s" / "workers" / "gone.yaml").exists()


def test_every_runnable_type_has_its_worker_files() -> None:
    names = [s.name for s in builtin_types()]
    assert sorted(p.stem for p in (ROOT / "ops" / "k8s" / "workers").glob("*.yaml")) == sorted(names)
    services = yaml.safe_load((ROOT / "ops/compose.yaml").read_text())["services"]
    assert sorted(k.removeprefix("worker-") for k in services if k.startswith("worker-")) == sorted(names)


@pytest.mark.parametrize(
    "text",
    [
        "plain",
        "yes",
        "No",
        "on",
        "null",
        "~",
        "0.0.0.0",
        "9101",
        "1e3",
        "0x1f",
        "12:30",
        "2026-01-01",
        "--check",
        "-1",
        "a: b",
        "ends:",
        "# not a comment",
        "line one\nline two",
        "  leading space\nsecond",
        "trailing \nspace",
        "tab\there",
        "ünïcode",
        "'quoted'",
        '"double"',
        "*alias",
        "&anchor",
        "!tag",
        "${PGCUE_IMAGE:-pgcue:latest}",
        "",
    ],
)
def test_the_yaml_writer_reads_back_as_written(text: str) -> None:
    value: dict[str, Any] = {"k": text, "list": [text, {"inner": text}], "n": 3, "t": True, "none": None}
    assert yaml.safe_load(dump(value)) == value


def test_make_runs_prometheus_targets_are_the_ports_make_run_gives() -> None:
    """ops/prometheus/prometheus.yml scrapes exactly the ports `pgcue dev` hands out."""
    types = [s.name for s in builtin_types()]
    given = []
    for child in _workers(types, [], METRICS_BASE_PORT):
        port = child.argv[child.argv.index("--metrics-port") + 1]
        given.append(f"127.0.0.1:{port}")
    config = yaml.safe_load((ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())
    jobs = {c["job_name"]: c["static_configs"][0]["targets"] for c in config["scrape_configs"]}
    assert jobs["pgcue-worker"] == given
    assert jobs["pgcue-api"] == ["127.0.0.1:8000"]


def test_composes_prometheus_targets_are_the_compose_services_metrics_ports() -> None:
    services = yaml.safe_load((ROOT / "ops/compose.yaml").read_text())["services"]
    config = yaml.safe_load((ROOT / "ops" / "prometheus" / "compose.yml").read_text())
    jobs = {c["job_name"]: c["static_configs"][0]["targets"] for c in config["scrape_configs"]}
    want = []
    for name, service in services.items():
        if name.startswith("worker-"):
            cmd = service["command"]
            assert cmd[cmd.index("--metrics-host") + 1] == "0.0.0.0"  # reachable from the Prometheus container
            want.append(f"{name}:{cmd[cmd.index('--metrics-port') + 1]}")
    assert jobs["pgcue-worker"] == want
    assert jobs["pgcue-api"] == ["api:8000"]
    mounted = services["prometheus"]["volumes"][0]
    assert mounted.startswith("./prometheus:/etc/prometheus")  # beside ops/compose.yaml


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return found


@pytest.mark.parametrize("name", ["prometheus.yml", "compose.yml"])
def test_promtool_accepts_the_scrape_configs(name: str) -> None:
    done = subprocess.run(
        [_promtool(), "check", "config", str(ROOT / "ops" / "prometheus" / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _relabel(labels: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus's relabelling (keep and replace, the actions the config uses)."""
    out = dict(labels)
    for rule in rules:
        value = ";".join(out.get(name, "") for name in rule.get("source_labels", []))
        regex = re.compile(f"^(?:{rule.get('regex', '(.*)')})$")
        action = rule.get("action", "replace")
        match = regex.match(value)
        if action == "keep":
            if not match:
                return None
        elif action == "replace" and match:
            replacement = rule.get("replacement", "$1")
            out[rule["target_label"]] = re.sub(
                r"\$(\d+)", lambda m, found=match: found.group(int(m.group(1))) or "", replacement
            )
    return out


def test_the_kubernetes_scrape_config_finds_every_pgcue_pod_on_its_annotated_port() -> None:
    """Debian's Prometheus is built without Kubernetes discovery, so promtool cannot load
    ops/prometheus/kubernetes.yml here; its relabelling is applied instead to the pods of
    the rendered tree, as Kubernetes discovery would present them."""
    from tests.deploy.helpers import rendered

    config = yaml.safe_load((ROOT / "ops" / "prometheus" / "kubernetes.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    seen = {}
    for obj in rendered():
        if obj["kind"] not in ("Deployment", "ScaledJob"):
            continue
        template = obj["spec"]["template"] if obj["kind"] == "Deployment" else obj["spec"]["jobTargetRef"]["template"]
        meta, pod = template["metadata"], template["spec"]
        labels = {"__address__": "10.1.2.3:0"}  # discovery gives the pod IP (with a port per container port)
        labels.update({f"__meta_kubernetes_pod_label_{_name(k)}": v for k, v in meta["labels"].items()})
        labels.update({f"__meta_kubernetes_pod_annotation_{_name(k)}": v for k, v in meta["annotations"].items()})
        labels["__meta_kubernetes_namespace"] = "studio"
        labels["__meta_kubernetes_pod_name"] = obj["metadata"]["name"] + "-x"
        target = _relabel(labels, job["relabel_configs"])
        assert target is not None, obj["metadata"]["name"]
        ports = {p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
        host, port = target["__address__"].split(":")
        assert host == "10.1.2.3" and int(port) in ports
        assert target["__metrics_path__"] == "/metrics"
        seen[obj["metadata"]["name"]] = target["job"]
    assert seen["pgcue-api"] == "pgcue-api"
    assert seen["pgcue-maintenance"] == "pgcue-worker"
    assert seen["pgcue-worker-tts"] == "pgcue-worker" and seen["pgcue-worker-render"] == "pgcue-worker"


def _name(key: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def test_generated_options_carry_the_schema(tmp_path: Path) -> None:
    files = deploy.generate("k8s", deploy.plans(builtin_types(), "studio_q"), deploy.Options(schema="studio_q"), [])
    tts = files["ops/k8s/workers/tts.yaml"]
    assert "FROM studio_q.jobs" in tts and "pgcue.jobs" not in tts
    assert "PGCUE_SCHEMA: studio_q" in files["ops/k8s/settings.yaml"]


def test_docs_deploy_holds_the_figures_the_registry_gives() -> None:
    table = deploy.table(deploy.plans(builtin_types(), "pgcue"))
    assert table in (ROOT / "docs" / "deploy.md").read_text(), "update the table in docs/deploy.md:\n" + table
