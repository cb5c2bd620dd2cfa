"""All-or-nothing outputs: locations checked before the work, several outputs committed together,
nothing left behind by a failure, stale temporaries of killed processes cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lead_core import artifacts
from lead_core.artifacts import (
    OutputNotWritableError,
    atomic_outputs,
    atomic_path,
    check_writable,
    remove_stale_temporaries,
)


def _listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_check_writable_names_the_path_and_leaves_nothing(tmp_path):
    check_writable(tmp_path / "new" / "deeper" / "out.parquet", None)
    assert _listing(tmp_path) == []  # parents made for the probe are removed again

    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(OutputNotWritableError, match=r"file\.txt/sub/r\.trec: .*file\.txt is not a folder"):
        check_writable(tmp_path / "ok.parquet", blocker / "sub" / "r.trec")

    read_only = tmp_path / "r.parquet"
    read_only.write_text("old")
    read_only.chmod(0o444)
    with pytest.raises(OutputNotWritableError, match=r"r\.parquet: the existing output file is read-only"):
        check_writable(read_only)

    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(
            OutputNotWritableError, match=r"locked/out\.json: the folder .*locked is read-only"
        ):
            check_writable(folder / "out.json")
        with pytest.raises(OutputNotWritableError, match="existing output folder is read-only"):
            check_writable(folder)
    finally:
        folder.chmod(0o755)
    assert _listing(tmp_path) == ["file.txt", "locked", "r.parquet"]


def test_an_unwritable_output_fails_on_entry_before_any_work(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    work = []
    with pytest.raises(OutputNotWritableError):
        with atomic_outputs(tmp_path / "a" / "run.parquet", tmp_path / "file.txt" / "r.trec"):
            work.append("done")
    assert work == []
    assert _listing(tmp_path) == ["file.txt"]  # the folder `a` made for the first output is gone


def test_all_outputs_are_committed_together(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "sub" / "b"
    a.write_text("old a")
    with atomic_outputs(a, None, b) as (ta, none, tb):
        assert none is None and ta.parent == a.parent and ta.name.startswith(".a.txt.tmp-")
        ta.write_text("new a")
        tb.mkdir()
        (tb / "x").write_text("new b")
        assert a.read_text() == "old a" and not b.exists()  # nothing visible before the end
    assert a.read_text() == "new a" and (b / "x").read_text() == "new b"
    assert _listing(tmp_path) == ["a.txt", "sub", "sub/b", "sub/b/x"]


def test_a_failure_leaves_every_output_as_it_was(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "new" / "b.txt"
    a.write_text("old a")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_outputs(a, b) as (ta, tb):
            ta.write_text("new a")
            tb.write_text("new b")
            raise RuntimeError("boom")
    assert a.read_text() == "old a"
    assert _listing(tmp_path) == ["a.txt"]  # no temporaries, no created folder


def test_an_output_the_stage_did_not_write_fails_the_whole_commit(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    with pytest.raises(RuntimeError, match=r"b\.txt: the stage wrote nothing"):
        with atomic_outputs(a, b) as (ta, _):
            ta.write_text("new a")
    assert _listing(tmp_path) == []


def test_a_failed_rename_rolls_back_the_renames_already_done(tmp_path, monkeypatch):
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"  # c: a new output
    a.write_text("old a")
    b.write_text("old b")
    real_replace = os.replace

    def replace(src, dst):
        if Path(src).name.startswith(".b.txt.tmp-"):  # the second output's rename into place fails
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        with atomic_outputs(a, c, b) as (ta, tc, tb):
            ta.write_text("new a")
            tc.write_text("new c")
            tb.write_text("new b")
    monkeypatch.undo()
    assert a.read_text() == "old a" and b.read_text() == "old b"
    assert _listing(tmp_path) == ["a.txt", "b.txt"]


def test_the_same_path_for_two_outputs_is_refused(tmp_path):
    with pytest.raises(ValueError, match="given for two outputs"):
        with atomic_outputs(tmp_path / "r", tmp_path / "." / "r"):
            pass


def test_temporaries_of_killed_processes_are_removed_live_ones_kept(tmp_path):
    final = tmp_path / "run.parquet"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    host = artifacts._HOST
    stale = [
        tmp_path / f".run.parquet.tmp-{host}-{dead_pid}",
        tmp_path / f"..run.parquet.tmp-{host}-{dead_pid}.tmp-{host}-{dead_pid}",  # a nested write
        tmp_path / f".run.parquet.old-{host}-{dead_pid}",
    ]
    kept = [
        tmp_path / f".run.parquet.tmp-{host}-{os.getppid()}",  # a live process: a concurrent writer
        tmp_path / f".run.parquet.tmp-otherhost-{dead_pid}",  # another host on a shared volume
        tmp_path / f".other.parquet.tmp-{host}-{dead_pid}",  # another output
    ]
    for path in stale + kept:
        path.write_text("partial")
    assert sorted(remove_stale_temporaries(final)) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)
    stale[0].write_text("partial")
    with atomic_path(final) as tmp:  # every stage cleans up on entry
        assert not stale[0].exists()
        tmp.write_text("new")
    assert final.read_text() == "new"
