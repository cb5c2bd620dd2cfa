"""The bad-input suite: every case of tests/bad_inputs/cases.yaml runs `lead` on a malformed input and
must fail with one line that names the file (and line), without a traceback, leaving its output
folder exactly as it was. The cases and their format are described in cases.yaml."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import sys
import threading
from pathlib import Path

import pytest
import yaml

from lead_core.cli import main

HERE = Path(__file__).resolve().parent / "bad_inputs"
CASES = yaml.safe_load((HERE / "cases.yaml").read_text())


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under `folder` (hidden ones included) with the sha256 of each file's content."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        for p in sorted(folder.rglob("*"))
    }


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    """403 for paths under /private/, 404 for every other path."""

    def do_HEAD(self):  # noqa: N802 - the http.server API
        self.send_response(403 if self.path.startswith("/private/") else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_base():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> Path:
    """corpus/queries/qrels.parquet of the valid dataset (inputs of the bm25 and evaluate cases)."""
    out = tmp_path_factory.mktemp("valid") / "data"
    argv = ["ingest", "--source", str(HERE / "valid_beir"), "--layout", "beir", "--split", "test"]
    assert main([*argv, "--out", str(out)]) == 0
    return out


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_bad_input(case, tmp_path, valid, http_base, monkeypatch, capsys):
    monkeypatch.setenv("LEAD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for module in case.get("hide_modules", []):
        monkeypatch.setitem(sys.modules, module, None)  # `import <module>` fails as if not installed
    out = tmp_path / "out"
    out.mkdir()
    for name, content in case.get("existing", {}).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(content)
    fill = {"here": HERE, "out": out, "valid": valid, "http": http_base, "closed_port": closed_port()}
    args = [str(arg).format(**fill) for arg in case["args"]]
    inputs, outputs = snapshot(HERE), snapshot(out)

    try:
        status = main(args)
    except SystemExit as exit_:  # argparse's usage errors
        status = exit_.code
    err = capsys.readouterr().err

    assert status == 1, err
    assert "Traceback" not in err, err
    stage = args[0]
    lines = [line for line in err.splitlines() if line.startswith(f"lead {stage}: error:")]
    assert len(lines) == 1, err
    message = lines[0].removeprefix(f"lead {stage}: error: ")
    assert case["file"].format(**fill) in message, message
    if "line" in case:
        assert re.search(rf"\bline {case['line']}\b", message), message
    assert re.search(case["error"], message), message
    assert snapshot(out) == outputs  # older outputs untouched, nothing new, no temporaries
    assert snapshot(HERE) == inputs
