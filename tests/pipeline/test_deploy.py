"""deploy/: every manifest parses, names what Kubernetes needs, takes credentials only from the
secrets the template defines, and the overlays build with kustomize (kubectl's, when present)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("local", "gpu-cluster")
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
KNOWN_KINDS = WORKLOADS | {"Namespace", "Service", "ConfigMap", "Secret", "Kustomization"}
PLACEHOLDER = "CHANGE-ME"


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _manifests() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in sorted(DEPLOY.rglob("*.yaml")) for doc in _documents(path)]


def _containers(doc: dict) -> list[dict]:
    spec = doc["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def _template_secrets() -> dict[tuple[str, str], dict[str, str]]:
    """(namespace, name) -> stringData of every secret in secret.example.yaml."""
    return {
        (doc["metadata"]["namespace"], doc["metadata"]["name"]): doc["stringData"]
        for doc in _documents(DEPLOY / "base" / "secret.example.yaml")
    }


def _by_kind_and_name(kind: str, name: str) -> dict:
    (doc,) = [
        doc for _, doc in _manifests() if doc.get("kind") == kind and doc["metadata"].get("name") == name
    ]
    return doc


def test_every_manifest_parses_and_has_kind_and_name():
    manifests = _manifests()
    assert len(manifests) >= 15
    for path, doc in manifests:
        where = f"{path.relative_to(REPO)}: {doc.get('kind')}"
        assert doc.get("kind") in KNOWN_KINDS, where
        if doc["kind"] == "Kustomization":
            continue
        assert doc.get("apiVersion"), where
        assert doc.get("metadata", {}).get("name"), where
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace"), f"{where} names no namespace"


def test_kustomizations_name_files_that_exist():
    for path in DEPLOY.rglob("kustomization.yaml"):
        (kustomization,) = _documents(path)
        assert kustomization["resources"], path
        for resource in kustomization["resources"]:
            assert (path.parent / resource).exists(), f"{path}: {resource} does not exist"


def test_workloads_pin_images_set_requests_and_match_their_selectors():
    workloads = [(p, d) for p, d in _manifests() if d["kind"] in WORKLOADS]
    assert {d["metadata"]["name"] for _, d in workloads} >= {"postgres", "minio", "mlflow", "minio-setup"}
    for path, doc in workloads:
        where = f"{path.relative_to(REPO)}: {doc['kind']}/{doc['metadata']['name']}"
        labels = doc["spec"]["template"]["metadata"]["labels"]
        if doc["kind"] != "Job":
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items(), where
        for container in _containers(doc):
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), (
                f"{where}: unpinned {image}"
            )
            assert container["resources"]["requests"], f"{where}: {container['name']} sets no requests"


def test_credentials_come_from_the_template_secrets_and_the_template_holds_none():
    secrets = _template_secrets()
    assert set(secrets) == {
        ("lead", "lead-postgres"),
        ("lead", "lead-minio"),
        ("lead", "lead-s3"),
        ("kubeflow", "lead-artifact-s3"),
    }
    for (_, name), data in secrets.items():
        for key in ("PASSWORD", "SECRET", "ROOT_USER"):
            for field, value in data.items():
                if key in field:
                    assert value == PLACEHOLDER, f"{name}.{field} must be a placeholder"
    references = 0
    for path, doc in _manifests():
        if doc["kind"] not in WORKLOADS:
            continue
        for container in _containers(doc):
            for env in container.get("env", []):
                name = env["name"]
                assert not any(word in name for word in ("PASSWORD", "SECRET")) or "valueFrom" in env, (
                    f"{path.name}: {name} must come from a secret"
                )
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    references += 1
                    secret = secrets.get((doc["metadata"]["namespace"], ref["name"]))
                    assert secret is not None, f"{path.name}: no template for secret {ref['name']}"
                    assert ref["key"] in secret, f"{path.name}: secret {ref['name']} has no key {ref['key']}"
    assert references >= 10
    assert not [
        p for p in DEPLOY.rglob("*") if p.is_file() and "secret" in p.name and "example" not in p.name
    ]


def test_mlflow_server_uses_postgres_and_serves_s3_artifacts():
    (container,) = _by_kind_and_name("Deployment", "mlflow")["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "server" and args[3].startswith("--workers=")  # overlays patch args/3
    assert "--serve-artifacts" in args
    backend = next(a for a in args if a.startswith("--backend-store-uri="))
    assert backend.startswith("--backend-store-uri=postgresql://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@")
    assert "--artifacts-destination=s3://mlflow/artifacts" in args
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://minio.lead.svc.cluster.local:9000"
    assert "mlflow.lead.svc.cluster.local:*" in env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    tracking = _by_kind_and_name("ConfigMap", "lead-tracking")
    assert tracking["data"]["MLFLOW_TRACKING_URI"] == "http://mlflow.lead.svc.cluster.local:5000"
    assert _by_kind_and_name("Service", "mlflow")["spec"]["ports"][0]["port"] == 5000


def test_kfp_launcher_puts_pipeline_artifacts_on_minio_with_a_template_secret():
    launcher = _by_kind_and_name("ConfigMap", "kfp-launcher")
    assert launcher["metadata"]["namespace"] == "kubeflow"
    assert launcher["data"]["defaultPipelineRoot"] == "s3://lead-pipelines/v2/artifacts"
    default = yaml.safe_load(launcher["data"]["providers"])["s3"]["default"]
    assert default["endpoint"] == "minio.lead.svc.cluster.local:9000"
    assert default["disableSSL"] is True and default["forcePathStyle"] is True
    ref = default["credentials"]["secretRef"]
    assert default["credentials"]["fromEnv"] is False
    secret = _template_secrets()[("kubeflow", ref["secretName"])]
    assert {ref["accessKeyKey"], ref["secretKeyKey"]} <= set(secret)
    setup = next(c for c in _containers(_by_kind_and_name("Job", "minio-setup")))
    assert "mc mb --ignore-existing lead/mlflow lead/lead-pipelines" in setup["args"][0]


def test_device_plugin_runs_only_on_the_gpu_pool_and_tolerates_its_taint():
    plugin = _documents(DEPLOY / "overlays" / "gpu-cluster" / "nvidia-device-plugin.yaml")[0]
    spec = plugin["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    for _, doc in _manifests():  # the platform itself never lands on GPU nodes
        if doc["kind"] in WORKLOADS and doc["metadata"]["name"] != "nvidia-device-plugin":
            assert "tolerations" not in doc["spec"]["template"]["spec"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with built-in kustomize) not installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_build_with_kustomize(overlay):
    done = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert "Deployment/mlflow" in kinds and "ConfigMap/kfp-launcher" in kinds and "Namespace/lead" in kinds
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "lead" for d in docs)
    mlflow = next(d for d in docs if d["kind"] == "Deployment")
    workers = [
        a for a in mlflow["spec"]["template"]["spec"]["containers"][0]["args"] if a.startswith("--workers")
    ]
    assert workers == ["--workers=1" if overlay == "local" else "--workers=4"]
    assert not [d for d in docs if d["kind"] == "Secret"], "secrets are never part of the build"
