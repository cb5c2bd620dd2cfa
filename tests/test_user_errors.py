"""Errors that say what to do: corrupt compressed files, YAML syntax errors, missing optional
packages, and four distinct remote failures (DNS, refused, 403, 404); the CLI prints each as one
line without a traceback and keeps the traceback of a bug.

Remote failures are provoked only on this machine: a local http.server on 127.0.0.1 (403, 404),
a closed port on 127.0.0.1 (refused) and a host name under the reserved `.invalid` TLD (DNS).
"""

from __future__ import annotations

import bz2
import gzip
import http.server
import logging
import socket
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from lead_core import cli
from lead_core.config import ConfigError, load_file
from lead_core.data import io
from lead_core.errors import MissingExtraError, UserError

LINES = b"".join(b"%d\tpassage number %d about cats\n" % (i, i) for i in range(20_000))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(io.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


# --- truncated and corrupt compressed files ---------------------------------------------------


def _damaged(data: bytes, how: str) -> bytes:
    """`data` cut in half, or with 200 bytes after its header zeroed."""
    return data[: len(data) // 2] if how == "truncated" else data[:30] + bytes(200) + data[230:]


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
@pytest.mark.parametrize(
    "suffix, compress, kind", [(".gz", gzip.compress, "gzip"), (".bz2", bz2.compress, "bzip2")]
)
def test_damaged_compressed_file_is_named(tmp_path, how, suffix, compress, kind):
    path = tmp_path / f"collection.tsv{suffix}"
    path.write_bytes(_damaged(compress(LINES), how))
    with pytest.raises(io.CorruptFileError) as err:
        list(io.iter_line_batches(path, batch_size=1000))
    message = str(err.value)
    assert message.startswith(f"{path}: the {kind} file is truncated"), message
    assert message.endswith("download it again")
    intact = tmp_path / f"intact.tsv{suffix}"
    intact.write_bytes(compress(LINES))
    assert sum(len(lines) for _, lines in io.iter_line_batches(intact)) == 20_000


def _zip(path: Path, member: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(member, member.name)


def _tar_gz(path: Path, member: Path) -> None:
    with tarfile.open(path, "w:gz") as tf:
        tf.add(member, member.name)


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
@pytest.mark.parametrize("name, pack, kind", [("data.zip", _zip, "zip"), ("data.tar.gz", _tar_gz, "tar.gz")])
def test_damaged_archive_is_named_and_nothing_unpacked(tmp_path, cache, how, name, pack, kind):
    member = tmp_path / "collection.tsv"
    member.write_bytes(LINES)
    archive = tmp_path / name
    pack(archive, member)
    archive.write_bytes(_damaged(archive.read_bytes(), how))
    with pytest.raises(
        io.CorruptFileError, match=rf"^{archive}: the {kind} file is truncated.*download it again$"
    ):
        io.resolve_dir(archive)
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_damaged_cached_download_says_to_delete_it(tmp_path, cache):
    cached = cache / "downloads" / "abc" / "corpus.jsonl.gz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(gzip.compress(LINES)[:100])
    with pytest.raises(io.CorruptFileError, match=rf"it is a cached download: delete {cached} and run again"):
        list(io.iter_line_batches(cached))


# --- config files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, where, problem",
    [
        ("source: x\nlayout: [beir\nsplit: test\n", "line 3, column 6", "expected ',' or ']'"),
        ("source: x\n  split: test\n", "line 2, column 8", "mapping values are not allowed here"),
        ('source: "x\n', "line 2, column 1", "found unexpected end of stream"),
        ("source: x\n\tsplit: test\n", "line 2, column 1", "found character '\\t'"),
    ],
)
def test_yaml_syntax_error_names_file_line_and_column(tmp_path, text, where, problem):
    path = tmp_path / "ingest.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_file(path)
    assert str(err.value).startswith(f"{path}: {where}: not valid YAML: "), str(err.value)
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_json_syntax_error_and_missing_config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"k": 1,\n "b": }\n')
    with pytest.raises(ConfigError, match=rf"^{path}: line 2, column 7: not valid JSON"):
        load_file(path)
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'nope.yaml'}: no such config file$"):
        load_file(tmp_path / "nope.yaml")


# --- missing optional packages ------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri, package", [("s3://bucket/corpus.jsonl", "s3fs"), ("gs://bucket/d.zip", "gcsfs")]
)
def test_missing_remote_backend_names_the_extra(monkeypatch, uri, package):
    monkeypatch.setitem(sys.modules, package, None)  # `import s3fs` now fails as if not installed
    with pytest.raises(MissingExtraError) as err:
        io.resolve(uri)
    assert str(err.value) == (
        f"{uri}: reading {uri.split(':')[0]}:// URIs needs the Python package {package}, which is not "
        f"installed: pip install 'lead-core[remote]' (or pip install {package})"
    )


def test_missing_http_backend_names_the_package(monkeypatch):
    import fsspec

    def unavailable(protocol, **kw):
        raise ImportError("HTTPFileSystem requires 'aiohttp'")

    monkeypatch.setattr(fsspec, "filesystem", unavailable)  # fsspec caches the http class once imported
    with pytest.raises(MissingExtraError) as err:
        io.resolve("https://example.org/corpus.jsonl")
    assert str(err.value).endswith(
        "needs the Python package aiohttp, which is not installed: pip install aiohttp"
    )


def test_missing_faiss_names_the_extra(monkeypatch):
    from lead_core.index.stage import _faiss

    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'lead-core\[faiss-cpu\]'"):
        _faiss()


def test_missing_mlflow_names_the_extra_and_does_not_stop_the_stage(monkeypatch, caplog):
    from lead_core.tracking import stage_run

    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.exceptions", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////nonexistent/mlflow.db")
    with caplog.at_level(logging.WARNING), stage_run("ingest", {}) as tracker:
        tracker.log_metrics({"x": 1.0})
    assert "pip install 'lead-core[tracking]'" in caplog.text


# --- remote failures: four distinct messages -----------------------------------------------------


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    """403 for paths under /private/, 404 for everything else."""

    def do_HEAD(self):  # noqa: N802 - the http.server API
        self.send_response(403 if self.path.startswith("/private/") else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture
def status_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_four_remote_failures_have_four_messages(status_server, cache):
    port = closed_port()
    cases = {
        "denied": f"{status_server}/private/corpus.jsonl.gz",
        "not-found": f"{status_server}/missing/corpus.jsonl.gz",
        "refused": f"http://127.0.0.1:{port}/corpus.jsonl.gz",
        "dns": "http://lead-core-test.invalid/corpus.jsonl.gz",
    }
    messages = {}
    for reason, uri in cases.items():
        with pytest.raises(io.RemoteError) as err:
            io.resolve(uri)
        assert err.value.reason == reason
        messages[reason] = str(err.value)
        assert messages[reason].startswith(f"{uri}: ")
    assert "access denied (HTTP 403)" in messages["denied"]
    assert "no such remote file (HTTP 404)" in messages["not-found"]
    assert f"connection refused by 127.0.0.1:{port}" in messages["refused"]
    assert "cannot resolve the host name 'lead-core-test.invalid' (DNS lookup failed)" in messages["dns"]
    assert isinstance(err.value, UserError)
    assert [p for p in cache.rglob("*") if p.is_file()] == []  # no partial download cached


# --- the CLI: one line for a user error, a traceback for a bug -----------------------------------


def test_cli_prints_a_user_error_as_one_line(tmp_path, capsys):
    path = tmp_path / "ingest.yaml"
    path.write_text("source: x\nlayout: [beir\n")
    assert cli.main(["ingest", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert (
        err
        == f"lead ingest: error: {path}: line 3, column 1: not valid YAML: while parsing a flow sequence, expected ',' or ']', but got '<stream end>'\n"
    )


def test_cli_keeps_the_traceback_of_a_bug(monkeypatch, tmp_path):
    from lead_core.evaluate import stage

    def broken(config):
        raise ValueError("an unexpected bug")  # a plain ValueError is not a user error

    monkeypatch.setattr(cli, "_load_stage", lambda name: (stage.Config, broken))
    with pytest.raises(ValueError, match="an unexpected bug"):
        cli.main(["evaluate", "--run", str(tmp_path / "r.trec"), "--qrels", str(tmp_path / "q.tsv")])


def test_a_bad_field_value_names_the_file_and_line_or_the_flag(tmp_path, capsys):
    path = tmp_path / "bm25.yaml"
    path.write_text("corpus: c.parquet\nqueries: q.parquet\nout_run: r.parquet\n\nk:\n  ten\nkk: 1\n")
    assert cli.main(["bm25", "--config", str(path)]) == 1
    assert capsys.readouterr().err.startswith(f"lead bm25: error: {path}: line 7: unknown field(s) ['kk']")
    path.write_text("corpus: c.parquet\nqueries: q.parquet\nout_run: r.parquet\n\nk:\n  ten\n")
    assert cli.main(["bm25", "--config", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"lead bm25: error: {path}: line 6: config field 'k': cannot read 'ten' as int: "
        "invalid literal for int() with base 10: 'ten'\n"
    )
    assert cli.main(["bm25", "--config", str(path), "--k", "0"]) == 1  # the flag wins, and is named
    assert capsys.readouterr().err == f"lead bm25: error: {path}: k must be >= 1, got 0\n"
    with pytest.raises(SystemExit) as exit_:  # argparse's own usage error, also without a traceback
        cli.main(["ingest", "--config", str(path), "--empty-documents", "drop"])
    assert exit_.value.code == 2 and "invalid choice: 'drop'" in capsys.readouterr().err


@pytest.mark.parametrize("streamed", [False, True])  # write_table, open_writer
def test_damaged_artifact_pages_fail_their_checksum(tmp_path, streamed):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lead_core.data.schema import CORPUS, SchemaError, iter_batches, open_writer, read_table, write_table

    path = tmp_path / "corpus.parquet"
    n = 300
    table = pa.table(
        {"doc_id": [f"d{i}" for i in range(n)], "title": [""] * n, "text": [f"text {i}" for i in range(n)]}
    )
    if streamed:
        with open_writer(path, CORPUS) as writer:
            writer.write(table)
    else:
        write_table(table, path, CORPUS)
    page = pq.read_metadata(path).row_group(0).column(0)  # doc_id's data page, after its ~30-byte header
    start = page.data_page_offset + 40
    data = bytearray(path.read_bytes())
    data[start : start + 20] = bytes(20)  # the values differ, the file still parses
    path.write_bytes(bytes(data))
    with pytest.raises(
        SchemaError, match=rf"^{path}: the Parquet file is corrupt .*CRC checksum verification failed"
    ):
        read_table(path, CORPUS)
    with pytest.raises(SchemaError, match=r"CRC checksum verification failed"):
        list(iter_batches(path, CORPUS))
