"""The Kubernetes tree renders with `kubectl kustomize`, every built-in object validates
strictly (kubernetes-validate --strict: unknown fields refused), every KEDA object
against KEDA's own CRD schema (pinned in ops/k8s/schemas/) with no field the API server
would prune, and the objects keep the promises docs/deploy.md makes about them."""

from __future__ import annotations

import copy
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgcue.cli.deploy.plan import GRACE_CAP_SECONDS, WorkerPlan
from pgcue.core import migrate
from pgcue.workers.runtime import registry
from tests.conftest import ROOT
from tests.deploy.helpers import K8S, builtin_types, crd_schema, kubectl, rendered, unknown_fields

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install -e '.[deploy]'")
jsonschema = pytest.importorskip("jsonschema", reason="pip install -e '.[deploy]'")

KUBERNETES = "1.32.0"  # a release most clusters run or have passed


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return rendered()


def _by(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _pod(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "ScaledJob":
        spec: dict[str, Any] = obj["spec"]["jobTargetRef"]["template"]["spec"]
        return spec
    return obj["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def _env(container: dict[str, Any], name: str) -> str | None:
    return next((e.get("value") for e in container.get("env", []) if e["name"] == name), None)


def test_the_tree_renders_and_every_builtin_object_validates_strictly(objects: list[dict[str, Any]]) -> None:
    kinds = sorted({o["kind"] for o in objects})
    assert {"Deployment", "Service", "Job", "PodDisruptionBudget", "ScaledObject", "ScaledJob"} <= set(kinds)
    failures = []
    for obj in objects:
        if obj["apiVersion"].startswith("keda.sh/"):
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert failures == []


def test_the_validator_is_strict_about_a_misspelt_field(objects: list[dict[str, Any]]) -> None:
    """The check above would catch a typo: a Deployment with `terminationGracePeriod`."""
    deployment = copy.deepcopy(_by(objects, "Deployment")["pgcue-worker-tts"])
    spec = deployment["spec"]["template"]["spec"]
    spec["terminationGracePeriod"] = spec.pop("terminationGracePeriodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def test_the_keda_objects_validate_against_kedas_crds(objects: list[dict[str, Any]]) -> None:
    keda = [o for o in objects if o["apiVersion"] == "keda.sh/v1alpha1"]
    assert {o["kind"] for o in keda} == {"ScaledObject", "ScaledJob", "TriggerAuthentication"}
    for obj in keda:
        schema = crd_schema(obj["kind"])
        jsonschema.validate(obj, schema, cls=jsonschema.Draft7Validator)
        assert unknown_fields(obj, schema) == [], f"{obj['kind']}/{obj['metadata']['name']} has fields KEDA prunes"


def test_the_crd_check_catches_a_misspelt_keda_field(objects: list[dict[str, Any]]) -> None:
    scaled = copy.deepcopy(_by(objects, "ScaledObject")["pgcue-worker-tts"])
    scaled["spec"]["coolDownPeriod"] = scaled["spec"].pop("cooldownPeriod")
    assert unknown_fields(scaled, crd_schema("ScaledObject")) == [".spec.coolDownPeriod"]
    bad = copy.deepcopy(_by(objects, "ScaledObject")["pgcue-worker-tts"])
    bad["spec"]["minReplicaCount"] = "zero"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, crd_schema("ScaledObject"), cls=jsonschema.Draft7Validator)


def test_the_pinned_crds_are_kedas_own() -> None:
    note = (K8S / "schemas" / "README.md").read_text()
    assert "kedacore/keda" in note and "v2.20.2" in note
    for name in ("keda.sh_scaledobjects.yaml", "keda.sh_scaledjobs.yaml", "keda.sh_triggerauthentications.yaml"):
        crd = yaml.safe_load((K8S / "schemas" / name).read_text())
        assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["group"] == "keda.sh"


def test_each_type_scales_from_its_registry_settings(objects: list[dict[str, Any]]) -> None:
    deployments, scaled, jobs = _by(objects, "Deployment"), _by(objects, "ScaledObject"), _by(objects, "ScaledJob")
    pdbs = _by(objects, "PodDisruptionBudget")
    for spec in builtin_types():
        plan = WorkerPlan(spec)
        name = plan.resource_name
        keda = jobs[name] if spec.deploy_as == "job" else scaled[name]
        (trigger,) = keda["spec"]["triggers"]
        assert trigger["type"] == "postgresql"
        assert trigger["metadata"]["targetQueryValue"] == str(spec.concurrency)  # jobs one pod runs at once
        assert trigger["authenticationRef"] == {"name": "pgcue-database"}
        assert keda["spec"]["minReplicaCount"] == 0  # cold start: the queue holds the work meanwhile
        assert name in pdbs
        pod = _pod(keda) if spec.deploy_as == "job" else _pod(deployments[name])
        (container,) = pod["containers"]
        budget = spec.memory_mb or 256
        assert container["resources"]["requests"]["memory"] == f"{budget}Mi"
        assert container["resources"]["limits"]["memory"] == f"{budget + budget // 4}Mi"
        grace = int(_env(container, "PGCUE_SHUTDOWN_GRACE") or 0)
        assert pod["terminationGracePeriodSeconds"] > grace  # the kubelet's SIGKILL never cuts the give-back
        args = container["args"]
        assert args[:3] == ["worker", "--type", spec.name]
        assert "--no-maintenance" in args  # the maintenance Deployment leads; workers scale to zero
        assert args[args.index("--metrics-host") + 1] == "0.0.0.0"
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        annotations = (
            keda["spec"]["jobTargetRef"]["template"]
            if spec.deploy_as == "job"
            else deployments[name]["spec"]["template"]
        )["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == args[args.index("--metrics-port") + 1]
        if spec.deploy_as == "deployment":
            assert grace == min(spec.timeout_seconds, GRACE_CAP_SECONDS)
            assert "replicas" not in deployments[name]["spec"]  # KEDA owns it
            cooldown = scaled[name]["spec"]["cooldownPeriod"]
            assert 60 <= cooldown <= 1800 and cooldown == max(60, min(1800, spec.timeout_seconds // 6))


def test_hours_long_renders_run_as_jobs_no_scale_in_can_stop(objects: list[dict[str, Any]]) -> None:
    render = _by(objects, "ScaledJob")["pgcue-worker-render"]
    spec = render["spec"]
    assert spec["rollout"]["strategy"] == "gradual"  # an update leaves running renders alone
    assert spec["scalingStrategy"]["strategy"] == "default"
    target = spec["jobTargetRef"]
    assert target["backoffLimit"] == 0 and target["template"]["spec"]["restartPolicy"] == "Never"
    (container,) = target["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--max-jobs") + 1] == "1" and "--idle-exit" in args
    registry.load()
    timeout = registry.get("render").timeout_seconds
    assert int(_env(container, "PGCUE_SHUTDOWN_GRACE") or 0) == timeout  # an eviction waits for the render
    assert target["activeDeadlineSeconds"] > timeout
    pdb = _by(objects, "PodDisruptionBudget")["pgcue-worker-render"]
    assert pdb["spec"]["minAvailable"] == spec["maxReplicaCount"]  # a drain waits for running renders
    assert "pgcue-worker-render" not in _by(objects, "Deployment")


def test_the_api_the_migration_and_the_maintenance_leader(objects: list[dict[str, Any]]) -> None:
    deployments = _by(objects, "Deployment")
    api = deployments["pgcue-api"]
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    service = _by(objects, "Service")["pgcue-api"]
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    job = _by(objects, "Job")["pgcue-migrate"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    assert job["metadata"]["annotations"]["pgcue.dev/schema-version"] == str(migrate.latest_version())
    # Every other pod waits for the migration before its own container starts.
    for name, obj in {**deployments, **_by(objects, "ScaledJob")}.items():
        (init,) = _pod(obj)["initContainers"]
        assert init["args"][:3] == ["migrate", "--check", "--wait"], name
    lead = deployments["pgcue-maintenance"]
    assert lead["spec"]["replicas"] == 1
    assert lead["spec"]["template"]["spec"]["containers"][0]["args"][0] == "maintenance"
    auth = _by(objects, "TriggerAuthentication")["pgcue-database"]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "connection", "name": "pgcue-database", "key": "direct-database-url"}
    ]


def test_every_pod_runs_as_the_images_user_on_a_read_only_root(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        if obj["kind"] not in ("Deployment", "ScaledJob", "Job"):
            continue
        pod = _pod(obj)
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts
            assert container["image"] == "pgcue:0.1.0"  # kustomization.yaml's images entry applied


def test_the_tree_renders_with_a_new_image_through_kustomize(tmp_path: Path) -> None:
    """`kustomize edit set image` style: an overlay that points at a registry."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(K8S, tmp_path)],
                "images": [{"name": "pgcue", "newName": "registry.example/studio/pgcue", "newTag": "2026.12"}],
            }
        )
    )
    out = subprocess.run([kubectl(), "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    images = {line.split("image:")[1].strip() for line in out.stdout.splitlines() if "image:" in line}
    assert images == {"registry.example/studio/pgcue:2026.12"}


def test_replicas_for_is_what_the_hpa_computes() -> None:
    registry.load()
    plan = WorkerPlan(registry.get("tts"))
    assert [plan.replicas_for(s) for s in (0, 1, 2, 3, 7, 1000)] == [0, 1, 1, 2, 4, plan.max_replicas]
    assert plan.replicas_for(7) == math.ceil(7 / 2)
    assert ROOT.exists()


def test_a_type_that_reads_a_secret_finds_it_where_its_setting_points(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    workers = {**_by(objects, "Deployment"), **_by(objects, "ScaledJob")}
    with_secrets = [s for s in builtin_types() if s.secret_files]
    assert "generate" in {s.name for s in with_secrets}  # its provider's API token
    for spec in builtin_types():
        plan = WorkerPlan(spec)
        pod = _pod(workers[plan.resource_name])
        container = pod["containers"][0]
        volume = next((v for v in pod["volumes"] if "secret" in v), None)
        if not spec.secret_files:
            assert volume is None, spec.name  # no type sees another's secret
            continue
        assert volume is not None and volume["secret"]["secretName"] == f"pgcue-{spec.name}"
        assert volume["secret"]["optional"] is True  # the pods start; the jobs say what is missing
        mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
        assert mount["readOnly"] is True
        paths = {i["key"]: f"{mount['mountPath']}/{i['path']}" for i in volume["secret"]["items"]}
        for setting, key in spec.secret_files:
            assert _env(container, setting) == paths[key]
    # The variable the Deployment sets is the one the generate type reads its token from.
    from pgcue.core.config import env_struct
    from pgcue.workers.types.generate import GenerateSettings

    token = tmp_path / "api-token"
    token.write_text("r8_secret\n")
    (setting, _key), *_ = next(s for s in with_secrets if s.name == "generate").secret_files
    read = env_struct(GenerateSettings, "PGCUE_GENERATE_", {setting: str(token)})
    assert read.api_token() == "r8_secret"


def test_compose_passes_a_types_secret_through_from_the_hosts_environment() -> None:
    services = yaml.safe_load((ROOT / "ops/compose.yaml").read_text())["services"]
    for spec in builtin_types():
        env = services[f"worker-{spec.name}"]["environment"]
        for setting, _ in spec.secret_files:
            variable = setting.removesuffix("_FILE")
            assert env[variable] == f"${{{variable}:-}}"
        if not spec.secret_files:
            assert not any("TOKEN" in name for name in env), spec.name
