"""`--submit` against a stand-in for the KFP API server (v2beta1 REST): the CLI must create the
experiment and post one run whose pipeline spec is ours and whose runtime parameters are the
profile's, overrides applied. No cluster runs here, so the server records what a real one receives."""

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lead_core.profiles import profile

from .test_packaging import KFP, REPO
from .test_pipeline import lead_msmarco


class _FakeKfpApi(BaseHTTPRequestHandler):
    """Answers the calls kfp.Client makes to submit a run; anything else is a 404."""

    requests: list[tuple[str, str, dict]] = []

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, method: str) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else {}
        self.requests.append((method, self.path, body))
        return body

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._record("GET")
        if self.path == "/apis/v2beta1/healthz":  # the client asks whether the server is multi-user
            return self._reply(200, {"multi_user": False})
        if self.path.startswith("/apis/v2beta1/experiments"):
            return self._reply(200, {"experiments": [], "total_size": 0})
        if self.path == "/apis/v2beta1/runs/run-1":  # `kfp run create` shows the run it created
            runs = [
                body
                for method, path, body in self.requests
                if (method, path) == ("POST", "/apis/v2beta1/runs")
            ]
            return self._reply(
                200, {**runs[-1], "run_id": "run-1", "state": "PENDING", "created_at": "2026-01-01T00:00:00Z"}
            )
        return self._reply(404, {"error": f"unexpected GET {self.path}"})

    def do_POST(self):  # noqa: N802
        body = self._record("POST")
        if self.path == "/apis/v2beta1/experiments":
            return self._reply(200, {**body, "experiment_id": "exp-1"})
        if self.path == "/apis/v2beta1/runs":
            return self._reply(200, {**body, "run_id": "run-1", "state": "PENDING"})
        return self._reply(404, {"error": f"unexpected POST {self.path}"})

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def kfp_api():
    _FakeKfpApi.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeKfpApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _FakeKfpApi.requests
    server.shutdown()
    server.server_close()


@pytest.mark.filterwarnings("ignore:This client only works with Kubeflow Pipeline v2:FutureWarning")
def test_submit_creates_the_experiment_and_posts_the_pipeline_with_the_profile_parameters(kfp_api, capsys):
    endpoint, requests = kfp_api
    code = lead_msmarco.main(
        f"--submit --endpoint {endpoint} --profile gpu --model-dir /mnt/models --set tau_l=5 "
        "--experiment lead-test --mlflow-uri http://mlflow:5000".split()
    )
    assert code == 0
    assert "submitted run run-1" in capsys.readouterr().out

    posts = {path: body for method, path, body in requests if method == "POST"}
    assert posts["/apis/v2beta1/experiments"]["display_name"] == "lead-test"
    run = posts["/apis/v2beta1/runs"]
    assert run["experiment_id"] == "exp-1" and run["display_name"] == "lead-gpu"

    # The body carries the compiled spec and the kfp-kubernetes platform spec (GPU tolerations).
    spec, platform = run["pipeline_spec"]["pipeline_spec"], run["pipeline_spec"]["platform_spec"]
    assert spec["pipelineInfo"]["name"] == lead_msmarco.build_pipeline()[0].name
    assert {"ingest", "distill", "evaluate"} <= set(spec["root"]["dag"]["tasks"])
    assert "nvidia.com/gpu" in json.dumps(platform)

    # Every pipeline parameter travels as a runtime parameter with the profile's value.
    sent = run["runtime_config"]["parameters"]
    expected = profile("gpu", model_dir="/mnt/models", tau_l=5.0)
    assert set(sent) == set(expected)
    assert sent["tau_l"] == 5.0 and sent["teacher_model"] == "/mnt/models/all-mpnet-base-v2"
    assert sent["dataset_uri"] == expected["dataset_uri"]
    assert sent["distill_steps"] == expected["distill_steps"]
    # The tracking URI given at submit time reaches the tasks' environment.
    assert "http://mlflow:5000" in json.dumps(spec["deploymentSpec"])


def test_submit_without_an_endpoint_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        lead_msmarco.main(["--submit"])
    assert exit_.value.code == 2
    assert "--submit needs --endpoint URL" in capsys.readouterr().err


def test_kfp_run_create_posts_the_spec_kfp_dsl_compile_wrote(kfp_api, tmp_path):
    """The README's cluster commands without the script: `kfp dsl compile`, then `kfp run create`
    with parameters as key=value."""
    endpoint, requests = kfp_api
    spec_file = tmp_path / "lead.yaml"
    compiled = subprocess.run(
        [str(KFP), "dsl", "compile", "--py", "pipelines/lead_msmarco.py", "--output", str(spec_file)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    created = subprocess.run(
        [str(KFP), "--endpoint", endpoint, "run", "create", "--experiment-name", "lead",
         "--package-file", str(spec_file), "dataset_uri=s3://bucket/msmarco", "tau_l=5"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert created.returncode == 0, created.stdout[-2000:] + created.stderr[-3000:]

    posts = {path: body for method, path, body in requests if method == "POST"}
    assert posts["/apis/v2beta1/experiments"]["display_name"] == "lead"
    run = posts["/apis/v2beta1/runs"]
    assert run["experiment_id"] == "exp-1"
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "lead-msmarco"
    assert "nvidia.com/gpu" in json.dumps(run["pipeline_spec"]["platform_spec"])
    # Only the parameters given travel; the others keep the spec's defaults (the msmarco profile).
    assert run["runtime_config"]["parameters"] == {"dataset_uri": "s3://bucket/msmarco", "tau_l": 5}
