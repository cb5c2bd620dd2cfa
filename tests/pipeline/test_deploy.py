"""deploy/: every manifest parses and takes credentials only from the secrets the template defines;
each overlay, rendered by kubectl's kustomize, runs MLflow behind its basic-auth app, puts no
secret on a command line, pins every image by digest and admits only the expected peers through
its NetworkPolicies; the pipeline's tasks get the MLflow credentials; refresh_digests.py rewrites
the one images file correctly (offline, with a stand-in for the registry tools)."""

from __future__ import annotations

import configparser
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
IMAGES_FILE = DEPLOY / "image-digests" / "kustomization.yaml"
OVERLAYS = ("local", "gpu-cluster")
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
KNOWN_KINDS = WORKLOADS | {"Namespace", "Service", "ConfigMap", "Secret", "NetworkPolicy", "Kustomization"}
PLACEHOLDER = "CHANGE-ME"
DIGEST_REF = re.compile(r"^[^@\s]+:[^@/\s]+@sha256:[0-9a-f]{64}$")
# Images this project builds (images/build.py): their digest exists only after a push to your
# registry, so the repository pins them by tag and refresh_digests.py adds the digest.
BUILT_HERE = {"lead-mlflow-server"}
# Pods of a KFP v2 run carry this label (kubeflow/pipelines backend, Argo workflow podMetadata).
PIPELINE_POD = {"pipelines.kubeflow.org/v2_component": "true"}


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _manifests() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in sorted(DEPLOY.rglob("*.yaml")) for doc in _documents(path)]


def _pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def _containers(doc: dict) -> list[dict]:
    spec = _pod_spec(doc)
    return spec.get("initContainers", []) + spec["containers"]


def _template_secrets() -> dict[tuple[str, str], dict[str, str]]:
    """(namespace, name) -> stringData of every secret in secret.example.yaml."""
    return {
        (doc["metadata"]["namespace"], doc["metadata"]["name"]): doc["stringData"]
        for doc in _documents(DEPLOY / "base" / "secret.example.yaml")
    }


def _one(docs, kind: str, name: str) -> dict:
    (doc,) = [d for d in docs if d.get("kind") == kind and d["metadata"].get("name") == name]
    return doc


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


# --- the manifests as written ---------------------------------------------------------------------


def test_every_manifest_parses_and_has_kind_and_name():
    manifests = _manifests()
    assert len(manifests) >= 20
    for path, doc in manifests:
        where = f"{path.relative_to(REPO)}: {doc.get('kind')}"
        if doc.get("kind") == "Component":
            continue
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
        for entry in kustomization.get("resources", []) + kustomization.get("components", []):
            assert (path.parent / entry).exists(), f"{path}: {entry} does not exist"
    for overlay in OVERLAYS:
        (kustomization,) = _documents(DEPLOY / "overlays" / overlay / "kustomization.yaml")
        assert kustomization["components"] == ["../../image-digests"], overlay
        assert "images" not in kustomization, f"{overlay}: images belong in {IMAGES_FILE.name} only"


def test_workloads_set_requests_and_match_their_selectors():
    workloads = [(p, d) for p, d in _manifests() if d["kind"] in WORKLOADS]
    assert {d["metadata"]["name"] for _, d in workloads} >= {
        "postgres",
        "minio",
        "mlflow",
        "minio-setup",
        "mlflow-setup",
    }
    for path, doc in workloads:
        where = f"{path.relative_to(REPO)}: {doc['kind']}/{doc['metadata']['name']}"
        labels = doc["spec"]["template"]["metadata"]["labels"]
        if doc["kind"] != "Job":
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items(), where
        for container in _containers(doc):
            assert container["resources"]["requests"], f"{where}: {container['name']} sets no requests"


def test_images_are_named_once_in_the_images_file_with_a_digest():
    entries = {entry["name"]: entry for entry in _documents(IMAGES_FILE)[0]["images"]}
    named = set()
    for path, doc in _manifests():
        if doc["kind"] in WORKLOADS:
            for container in _containers(doc):
                image = container["image"]
                named.add(image)
                # no tag or digest in the manifests: the images file is the one place for them
                assert ":" not in image.rsplit("/", 1)[-1] and "@" not in image, f"{path.name}: {image}"
    assert named == set(entries), "every image the manifests name has exactly one entry"
    for name, entry in entries.items():
        if name.rsplit("/", 1)[-1] in BUILT_HERE:
            continue
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", entry.get("digest", "")), f"{name} is not pinned"
    mlflow_pin = next(
        line
        for line in (REPO / "images" / "constraints.txt").read_text().splitlines()
        if line.startswith("mlflow==")
    )
    assert entries["ghcr.io/lead-project/lead-mlflow-server"]["newTag"] == mlflow_pin.split("==")[1]


def test_credentials_come_from_the_template_secrets_and_the_template_holds_none():
    secrets = _template_secrets()
    assert set(secrets) == {
        ("lead", "lead-postgres"),
        ("lead", "lead-minio"),
        ("lead", "lead-s3"),
        ("kubeflow", "lead-artifact-s3"),
        ("lead", "lead-mlflow-admin"),
        ("lead", "lead-mlflow-pipeline"),
        ("kubeflow", "lead-mlflow-tracking"),
    }
    for (_, name), data in secrets.items():
        for field, value in data.items():
            if any(key in field for key in ("PASSWORD", "SECRET", "ROOT_USER")):
                assert value == PLACEHOLDER, f"{name}.{field} must be a placeholder"
    # the pipeline's user: the same key names in both namespaces (the setup Job and the tasks)
    assert set(secrets["lead", "lead-mlflow-pipeline"]) == set(secrets["kubeflow", "lead-mlflow-tracking"])
    references = 0
    for path, doc in _manifests():
        if doc["kind"] not in WORKLOADS:
            continue
        for container in _containers(doc):
            for name, env in _env(container).items():
                assert not any(word in name for word in ("PASSWORD", "SECRET")) or "valueFrom" in env, (
                    f"{path.name}: {name} must come from a secret"
                )
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    references += 1
                    secret = secrets.get((doc["metadata"]["namespace"], ref["name"]))
                    assert secret is not None, f"{path.name}: no template for secret {ref['name']}"
                    assert ref["key"] in secret, f"{path.name}: secret {ref['name']} has no key {ref['key']}"
    assert references >= 18
    assert not [
        p for p in DEPLOY.rglob("*") if p.is_file() and "secret" in p.name and "example" not in p.name
    ]


def test_kfp_launcher_puts_pipeline_artifacts_on_minio_with_a_template_secret():
    docs = [doc for _, doc in _manifests()]
    launcher = _one(docs, "ConfigMap", "kfp-launcher")
    assert launcher["metadata"]["namespace"] == "kubeflow"
    assert launcher["data"]["defaultPipelineRoot"] == "s3://lead-pipelines/v2/artifacts"
    default = yaml.safe_load(launcher["data"]["providers"])["s3"]["default"]
    assert default["endpoint"] == "minio.lead.svc.cluster.local:9000"
    assert default["disableSSL"] is True and default["forcePathStyle"] is True
    ref = default["credentials"]["secretRef"]
    assert default["credentials"]["fromEnv"] is False
    secret = _template_secrets()[("kubeflow", ref["secretName"])]
    assert {ref["accessKeyKey"], ref["secretKeyKey"]} <= set(secret)
    setup = _containers(_one(docs, "Job", "minio-setup"))[0]
    assert "mc mb --ignore-existing lead/mlflow lead/lead-pipelines" in setup["args"][0]


def test_device_plugin_runs_only_on_the_gpu_pool_and_tolerates_its_taint():
    plugin = _documents(DEPLOY / "overlays" / "gpu-cluster" / "nvidia-device-plugin.yaml")[0]
    spec = plugin["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    for _, doc in _manifests():  # the platform itself never lands on GPU nodes
        if doc["kind"] in WORKLOADS and doc["metadata"]["name"] != "nvidia-device-plugin":
            assert "tolerations" not in doc["spec"]["template"]["spec"]


# --- the overlays as kustomize renders them -------------------------------------------------------


def _kustomize_major(command: list[str]) -> int:
    """The major version of the kustomize that `command` reports (0: none, e.g. kubectl < 1.21):
    kubectl says "Kustomize Version: v5.5.0", kustomize "v5.5.0" or "{Version:kustomize/v4.5.7 ...}"."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    found = re.search(r"Kustomize Version: v(\d+)|kustomize/v(\d+)|^v(\d+)\.", done.stdout, re.MULTILINE)
    return int(next(g for g in found.groups() if g)) if done.returncode == 0 and found else 0


@functools.cache
def _renderer() -> tuple[list[str], str]:
    """(the command that renders a kustomization directory, "") or ([], why there is none).

    kubectl's built-in kustomize (kubectl >= 1.21), else a standalone kustomize; when neither is
    installed and this runs as root with apt-get, Debian's kubernetes-client is installed first.
    The manifests use `labels` and `components`: kustomize v4 or newer."""
    if not shutil.which("kubectl") and not shutil.which("kustomize"):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            return (
                [],
                "neither kubectl nor kustomize is installed (apt-get install kubernetes-client, as root)",
            )
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "kubernetes-client"],
        ):
            done = subprocess.run(command, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                return [], f"{' '.join(command)} failed: {done.stderr[-1000:]}"
    kubectl, kustomize = shutil.which("kubectl"), shutil.which("kustomize")
    if kubectl and _kustomize_major([kubectl, "version", "--client"]) >= 4:
        return [kubectl, "kustomize"], ""
    if kustomize and _kustomize_major([kustomize, "version"]) >= 4:
        return [kustomize, "build"], ""
    return [], (
        f"kubectl ({kubectl}) embeds no kustomize >= v4 and there is no standalone one: Debian "
        "bookworm's kubernetes-client is kubectl 1.20 (kustomize v2); install kubectl >= 1.21 or kustomize >= 4"
    )


@functools.cache
def _render(overlay: str) -> tuple[dict, ...]:
    command, why_not = _renderer()
    if not command:
        pytest.skip(why_not)
    done = subprocess.run(
        [*command, str(DEPLOY / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


@pytest.fixture(params=OVERLAYS)
def rendered(request) -> tuple[dict, ...]:
    return _render(request.param)


def _rendered_containers(docs) -> list[tuple[str, dict, dict]]:
    """(kind/name, pod's workload document, container) for every container of every workload."""
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d, c)
        for d in docs
        if d["kind"] in WORKLOADS
        for c in _containers(d)
    ]


def test_overlays_build_with_kustomize():
    for overlay in OVERLAYS:
        docs = _render(overlay)
        kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
        assert {"Deployment/mlflow", "ConfigMap/kfp-launcher", "Namespace/lead", "Job/mlflow-setup"} <= set(
            kinds
        )
        assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "lead" for d in docs)
        args = _containers(_one(docs, "Deployment", "mlflow"))[-1]["args"]
        workers = [a for a in args if a.startswith("--workers")]
        assert workers == ["--workers=1" if overlay == "local" else "--workers=4"], overlay
        assert not [d for d in docs if d["kind"] == "Secret"], "secrets are never part of the build"
        assert PLACEHOLDER not in yaml.safe_dump_all(docs), "a template value reached the build"


def test_mlflow_requires_authentication_with_credentials_from_secrets(rendered):
    mlflow = _one(rendered, "Deployment", "mlflow")
    (container,) = _pod_spec(mlflow)["containers"]
    args, env = container["args"], _env(container)
    assert args[0] == "server" and "--app-name=basic-auth" in args
    assert "--serve-artifacts" in args and "--artifacts-destination=s3://mlflow/artifacts" in args
    # the auth app's config: a mounted ConfigMap whose file selects basic auth and holds no secret
    config_path = Path(env["MLFLOW_AUTH_CONFIG_PATH"]["value"])
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == config_path.parent]
    (volume,) = [v for v in _pod_spec(mlflow)["volumes"] if v["name"] == mount["name"]]
    ini_text = _one(rendered, "ConfigMap", volume["configMap"]["name"])["data"][config_path.name]
    ini = configparser.ConfigParser()
    ini.read_string(ini_text)
    assert ini["mlflow"]["authorization_function"] == "mlflow.server.auth:authenticate_request_basic_auth"
    assert ini["mlflow"]["default_permission"] in {"READ", "NO_PERMISSIONS"}
    assert "admin_password" not in ini["mlflow"]
    # the store URIs name only the driver: libpq reads host, user, password and database from PG*
    for uri in (ini["mlflow"]["database_uri"], env["MLFLOW_BACKEND_STORE_URI"]["value"]):
        assert uri == "postgresql+psycopg2://", uri
    secret_backed = {
        "MLFLOW_AUTH_ADMIN_USERNAME",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "AWS_SECRET_ACCESS_KEY",
    }
    for name in secret_backed:
        assert env[name]["valueFrom"]["secretKeyRef"]["name"].startswith("lead-"), name
    assert env["PGHOST"]["value"] == "postgres.lead.svc.cluster.local"
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://minio.lead.svc.cluster.local:9000"
    assert "mlflow.lead.svc.cluster.local:*" in env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    tracking = _one(rendered, "ConfigMap", "lead-tracking")
    assert tracking["data"]["MLFLOW_TRACKING_URI"] == "http://mlflow.lead.svc.cluster.local:5000"
    assert _one(rendered, "Service", "mlflow")["spec"]["ports"][0]["port"] == 5000
    # the pipeline's user is made by the setup Job as the admin, from the secret the tasks read
    setup = _pod_spec(_one(rendered, "Job", "mlflow-setup"))["containers"][0]
    setup_env = _env(setup)
    assert setup_env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "lead-mlflow-admin",
        "key": "MLFLOW_AUTH_ADMIN_PASSWORD",
    }
    assert setup_env["PIPELINE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "lead-mlflow-pipeline"
    assert "client.create_user(user, password)" in setup["args"][0]


def _secret_variables(container: dict) -> set[str]:
    """Env variables of `container` whose value is a password or secret key from a secret."""
    return {
        name
        for name, env in _env(container).items()
        if any(
            word in env.get("valueFrom", {}).get("secretKeyRef", {}).get("key", "")
            for word in ("PASSWORD", "SECRET")
        )
    }


def test_no_secret_reaches_a_command_line(rendered):
    checked = 0
    for where, _, container in _rendered_containers(rendered):
        secret_vars = _secret_variables(container)
        for line in [
            part
            for part in container.get("command", []) + container.get("args", [])
            for part in part.splitlines()
        ]:
            for name in secret_vars:
                # $(NAME): Kubernetes itself splices the value into the process's arguments
                assert f"$({name})" not in line, f"{where}: {line!r}"
                # $NAME in a shell script: only into printf (a builtin, so no process argv) and a pipe
                if re.search(rf"\$\{{?{name}\b", line):
                    assert line.strip().startswith("printf ") and "|" in line, f"{where}: {line!r}"
                    checked += 1
    assert checked >= 1  # the minio-setup script hands the user's secret key to mc on stdin
    mc = next(c for w, _, c in _rendered_containers(rendered) if w == "Job/minio-setup")
    assert "mc alias set" not in mc["args"][0] and "MC_HOST_lead" in _env(mc)


def test_every_image_is_pinned_by_digest(rendered):
    images = {container["image"] for _, _, container in _rendered_containers(rendered)}
    assert len(images) >= 4
    unpinned = {image for image in images if not DIGEST_REF.match(image)}
    assert {image.split(":")[0].rsplit("/", 1)[-1] for image in unpinned} <= BUILT_HERE, unpinned


def test_network_policies_admit_only_the_expected_peers(rendered):
    policies = {d["metadata"]["name"]: d["spec"] for d in rendered if d["kind"] == "NetworkPolicy"}
    deny = policies.pop("default-deny-ingress")
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}  # nothing in `lead` is open by default
    services = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Service"}

    def peers(app: str) -> list[dict]:
        """The peers of the one policy that selects `app`'s pods (taken out of `policies`)."""
        (name,) = [
            n
            for n, s in policies.items()
            if s["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": app}}
        ]
        spec = policies.pop(name)
        assert spec["policyTypes"] == ["Ingress"], name
        (rule,) = spec["ingress"]
        ports = {p["port"] for p in rule["ports"]}
        assert ports == {services[app]["spec"]["ports"][0]["port"]}, app  # the service port only
        return rule["from"]

    def pods(labels: dict, namespace: str | None = None) -> dict:
        peer = {"podSelector": {"matchLabels": labels}}
        if namespace:
            peer["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
        return peer

    pipeline_pods = pods(PIPELINE_POD, "kubeflow")
    ingress = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    in_lead = lambda app: pods({"app.kubernetes.io/name": app})  # noqa: E731

    def same(got: list[dict], expected: list[dict]) -> bool:
        return sorted(json.dumps(p, sort_keys=True) for p in got) == sorted(
            json.dumps(p, sort_keys=True) for p in expected
        )

    assert same(peers("mlflow"), [pipeline_pods, ingress, in_lead("mlflow-setup")])
    assert same(peers("postgres"), [in_lead("mlflow")])
    ui = pods({"app": "ml-pipeline-ui"}, "kubeflow")
    assert same(peers("minio"), [in_lead("mlflow"), in_lead("minio-setup"), pipeline_pods, ui])
    assert not policies, f"unexpected policies {sorted(policies)}"
    # the selectors match the pods they are meant for
    for kind, name in (("Deployment", "mlflow"), ("StatefulSet", "postgres"), ("StatefulSet", "minio")):
        labels = _one(rendered, kind, name)["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == name
    for job in ("mlflow-setup", "minio-setup"):
        assert (
            _one(rendered, "Job", job)["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
            == job
        )


# --- the pipeline's side: tasks carry the MLflow credentials --------------------------------------


def test_pipeline_tasks_read_mlflow_credentials_from_the_template_secret(tmp_path):
    from kfp import compiler

    from pipelines import lead_msmarco

    pipeline, _ = lead_msmarco.build_pipeline()
    compiler.Compiler().compile(pipeline, str(tmp_path / "spec.yaml"))
    _, platform = yaml.safe_load_all((tmp_path / "spec.yaml").read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    (namespace,) = {
        d["metadata"]["namespace"]
        for _, d in _manifests()
        if d.get("metadata", {}).get("name") == "lead-tracking"
    }
    secrets = _template_secrets()
    assert len(executors) >= 10
    for name, executor in executors.items():
        (use,) = [s for s in executor.get("secretAsEnv", []) if "MLFLOW" in str(s["keyToEnv"])]
        keys = {pair["envVar"]: pair["secretKey"] for pair in use["keyToEnv"]}
        assert keys == {k: k for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}, name
        assert set(keys.values()) <= set(secrets[namespace, use["secretName"]]), name
        assert use["optional"] is True, name  # runs without a deploy/ (no secret) still start


# --- refresh_digests.py, offline ------------------------------------------------------------------


def _refresher():
    spec = importlib.util.spec_from_file_location("refresh_digests", DEPLOY / "refresh_digests.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_images_file_is_in_the_form_refresh_digests_writes():
    refresher = _refresher()
    assert refresher.render_images(refresher.read_images(IMAGES_FILE)) == IMAGES_FILE.read_text()


def test_refresh_sets_every_digest_or_none():
    refresher = _refresher()
    entries = refresher.read_images(IMAGES_FILE)
    asked = []

    def registry(ref: str) -> str:
        asked.append(ref)
        return "sha256:" + f"{len(asked):x}" * 64

    refresher.refresh(entries, registry)
    assert asked == [refresher.reference(e) for e in entries]
    assert "ghcr.io/lead-project/lead-mlflow-server:3.17.2" in asked and "postgres:16.6-bookworm" in asked
    assert [e["digest"] for e in entries] == ["sha256:" + f"{i:x}" * 64 for i in range(1, len(asked) + 1)]
    # only the named image (by its last path part), e.g. right after images/build.py --push
    asked.clear()
    refresher.refresh(entries, registry, only={"lead-mlflow-server"})
    assert asked == ["ghcr.io/lead-project/lead-mlflow-server:3.17.2"]
    with pytest.raises(refresher.RefreshError, match="no image named"):
        refresher.refresh(entries, registry, only={"nope"})
    # an answer that is not a digest changes nothing, not even the entries resolved before it
    before = [dict(e) for e in entries]
    answers = iter(["sha256:" + "a" * 64, "not-a-digest"])
    with pytest.raises(refresher.RefreshError, match="postgres|minio"):
        refresher.refresh(entries, lambda ref: next(answers))
    assert entries == before


def test_refresh_command_with_a_stand_in_crane(tmp_path):
    """The whole command, with a `crane` on PATH that answers like the real one (no registry here)."""
    images = tmp_path / "kustomization.yaml"
    images.write_text(IMAGES_FILE.read_text())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    crane = bin_dir / "crane"
    crane.write_text(
        '#!/bin/sh\n[ "$1" = digest ] || exit 2\necho "$2" >> "$CRANE_LOG"\n'
        'case "$2" in *fail*) echo "MANIFEST_UNKNOWN" >&2; exit 1;; esac\n'
        'printf "sha256:%064d\\n" 7\n'
    )
    crane.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CRANE_LOG": str(tmp_path / "log")}
    script = [sys.executable, str(DEPLOY / "refresh_digests.py"), "--file", str(images), "--tool", "crane"]

    check = subprocess.run([*script, "--check"], capture_output=True, text=True, env=env)
    assert (
        check.returncode == 1
        and "not pinned by digest: ghcr.io/lead-project/lead-mlflow-server:3.17.2" in check.stderr
    )
    done = subprocess.run(script, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    pinned = yaml.safe_load(images.read_text())["images"]
    assert {e["digest"] for e in pinned} == {"sha256:" + "0" * 63 + "7"}
    assert subprocess.run([*script, "--check"], env=env).returncode == 0
    # a tag the registry does not know: exit 1 with the tool's message, the file untouched
    text = images.read_text().replace('newTag: "v0.17.1"', 'newTag: "v0.17.1-fail"')
    images.write_text(text)
    failed = subprocess.run(script, capture_output=True, text=True, env=env)
    assert (
        failed.returncode == 1
        and "MANIFEST_UNKNOWN" in failed.stderr
        and "k8s-device-plugin" in failed.stderr
    )
    assert images.read_text() == text
