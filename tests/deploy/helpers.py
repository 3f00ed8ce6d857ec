"""Reading the committed deployment files the way the tools do."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from pgcue.workers.runtime import registry
from pgcue.workers.runtime.registry import TypeSpec
from tests.conftest import ROOT

K8S = ROOT / "ops" / "k8s"
SCHEMAS = K8S / "schemas"
KEDA_CRDS = {
    "ScaledObject": "keda.sh_scaledobjects.yaml",
    "ScaledJob": "keda.sh_scaledjobs.yaml",
    "TriggerAuthentication": "keda.sh_triggerauthentications.yaml",
}


def builtin_types() -> list[TypeSpec]:
    """The runnable types a deployment is generated from: the built-in ones. Other tests in
    this process register the test types (tests/helpers/jobtypes.py) in the same registry;
    they are not deployed, so they are left out here as `pgcue deploy` (a fresh process)
    leaves them out."""
    registry.load()
    return [s for s in registry.runnable() if s.handler is not None and s.handler.__module__.startswith("pgcue.")]


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        import pytest

        pytest.skip("kubectl is not installed")
    return found


def rendered(tree: Path = K8S) -> list[dict[str, Any]]:
    """`kubectl kustomize` of the tree, as objects."""
    out = subprocess.run([kubectl(), "kustomize", str(tree)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def crd_schema(kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of KEDA's CRD for `kind` (the served v1alpha1 version), from the
    pinned copy in ops/k8s/schemas/."""
    crd = yaml.safe_load((SCHEMAS / KEDA_CRDS[kind]).read_text())
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields `value` has that `schema` does not declare: what the API server would prune
    from a custom resource without a word (a misspelt cooldownPeriod is simply gone)."""
    found: list[str] = []
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return found
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                found += unknown_fields(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += unknown_fields(item, extra, f"{path}.{key}")
            elif props is not None or extra is False:
                found.append(f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for n, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}[{n}]")
    return found
