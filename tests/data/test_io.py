"""Local and remote files: gzip, the download cache (against a localhost HTTP server), archives."""

from __future__ import annotations

import gzip
import http.server
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest

from lead_core.data import io
from lead_core.data.schema import SchemaError
from lead_core.errors import MissingExtraError
from lead_core.ingest import Config, run
from tests.data.helpers import beir_dir


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    gets: list[str] = []

    def do_GET(self):  # noqa: N802 - the http.server API
        type(self).gets.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A localhost HTTP server over tmp_path/www; yields (base URL, www folder, list of GET paths)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = type("Handler", (CountingHandler,), {"gets": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www, handler.gets
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(io.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir_default(monkeypatch):
    monkeypatch.delenv(io.CACHE_ENV, raising=False)
    assert io.cache_dir() == Path.home() / ".cache" / "lead"


def test_local_paths_and_gzip(tmp_path):
    plain = tmp_path / "a.tsv"
    plain.write_text("1\tone\r\n2\ttwo\u2028still two\n", encoding="utf-8")
    packed = tmp_path / "a.tsv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, packed, f"file://{plain}"):
        assert io.resolve(path) == (plain if path != packed else packed)
        with io.open_text(path) as fh:
            assert fh.read().split("\n")[:2] == ["1\tone\r", "2\ttwo\u2028still two"]
    assert list(io.iter_line_batches(packed, batch_size=1)) == [
        (1, ["1\tone"]),
        (2, ["2\ttwo\u2028still two"]),
    ]
    with pytest.raises(FileNotFoundError, match="no such file"):
        io.resolve(tmp_path / "missing.tsv")


def test_http_download_is_cached(server, cache):
    base, www, gets = server
    (www / "queries.tsv.gz").write_bytes(gzip.compress(b"1\tfirst query\n2\tsecond\n"))
    url = f"{base}/queries.tsv.gz"
    with io.open_text(url) as fh:
        assert fh.read() == "1\tfirst query\n2\tsecond\n"
    local = io.resolve(url)
    assert local.is_relative_to(cache) and local.name == "queries.tsv.gz"
    assert gets == ["/queries.tsv.gz"]  # the second open and resolve came from the cache
    with io.open_text(url) as fh:
        assert fh.readline() == "1\tfirst query\n"
    assert gets == ["/queries.tsv.gz"]
    assert [p.name for p in local.parent.iterdir()] == ["queries.tsv.gz"]  # no temporary left over


def test_http_missing_file(server, cache):
    base, _, _ = server
    with pytest.raises(FileNotFoundError, match="no such remote file"):
        io.resolve(f"{base}/nothing.tsv")
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_http_archive_is_unpacked_and_ingested(server, cache, tmp_path):
    base, www, gets = server
    src = beir_dir(tmp_path / "mini")
    with zipfile.ZipFile(www / "mini.zip", "w") as zf:  # BEIR's archives hold one top folder
        for path in sorted(src.rglob("*")):
            zf.write(path, Path("mini") / path.relative_to(src))
    folder = io.resolve_dir(f"{base}/mini.zip")
    assert folder.name == "mini" and (folder / "qrels" / "test.tsv").is_file()
    counts = run(Config(source=f"{base}/mini.zip", layout="beir", split="test", out=str(tmp_path / "out")))
    assert counts["docs"] == 2 and counts["queries"] == 1
    assert gets == ["/mini.zip"]


def test_http_folder_needs_an_archive(server, cache):
    base, _, _ = server
    with pytest.raises(ValueError, match="must be an archive"):
        io.resolve_dir(f"{base}/dataset/")


def test_missing_backend_names_the_package(monkeypatch):
    import fsspec

    def unavailable(protocol, **kw):
        raise ImportError(f"Install s3fs to access {protocol}")

    monkeypatch.setattr(fsspec, "filesystem", unavailable)
    with pytest.raises(
        MissingExtraError, match=r"needs the Python package s3fs.*pip install 'lead-core\[remote\]'"
    ):
        io.resolve("s3://bucket/collection.tsv")


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "c.tsv.gz"
    path.write_bytes(gzip.compress(b"0\tok\n1\tok\n2\tbad \xc3\x28\n"))
    with pytest.raises(SchemaError, match=r"c\.tsv\.gz: line 3: not valid UTF-8"):
        list(io.iter_line_batches(path, batch_size=2))


def test_beir_name_uses_the_public_archive(server, cache, tmp_path, monkeypatch):
    from lead_core.data import beir

    base, www, gets = server
    src = beir_dir(tmp_path / "scifact")
    with zipfile.ZipFile(www / "scifact.zip", "w") as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, Path("scifact") / path.relative_to(src))
    monkeypatch.setattr(beir, "ARCHIVE_URL", base + "/{name}.zip")
    counts = run(Config(source="beir:scifact", layout="beir", split="test", out=str(tmp_path / "out")))
    assert counts["docs"] == 2 and gets == ["/scifact.zip"]
    with pytest.raises(ValueError, match="use --layout beir"):
        run(Config(source="beir:scifact", layout="msmarco", split="test", out=str(tmp_path / "o2")))


def test_local_tar_gz_without_top_folder_and_bom(tmp_path, cache):
    import tarfile

    from tests.data.helpers import msmarco_dir

    src = msmarco_dir(tmp_path / "src")
    (src / "queries.dev.small.tsv").write_bytes(
        b"\xef\xbb\xbf" + (src / "queries.dev.small.tsv").read_bytes()
    )
    archive = tmp_path / "collectionandqueries.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for path in sorted(src.iterdir()):
            tf.add(path, path.name)
    folder = io.resolve_dir(archive)
    assert folder.is_relative_to(cache) and (folder / "collection.tsv").is_file()
    counts = run(Config(source=str(archive), layout="msmarco", split="dev", out=str(tmp_path / "out")))
    assert counts["queries"] == 2  # '10' (behind the BOM) and '11' are judged
