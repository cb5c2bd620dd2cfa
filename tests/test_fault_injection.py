"""Fault injection: each long stage, SIGKILLed at a random point, leaves no partial artifact (an
output is absent, or complete when the kill came after its commit) and nothing a later run could
take for one, and a rerun gives exactly the uninterrupted result; kfp.local caches
no entry for a killed task.

The kill point is a seeded random count of calls into lead_core: the child (`lead <stage>` in a
subprocess) counts the calls of lead_core functions on its main thread and SIGKILLs itself at call
k, where k is drawn from 1..N and N is the count of an uninterrupted run of the same command. A
SIGKILL runs no cleanup code (no `finally`, no `atexit`): what it leaves is what a crashed node or
an OOM kill leaves.
"""

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lead_core import cli
from lead_core.report import read_step_log

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("LEAD_FAULT_SEED", 20261202))  # the kill points (set it to try others)

# Runs `lead <stage> <args>` and counts the calls of lead_core functions (main thread, after the
# stage module is imported); SIGKILLs itself at call `kill_at` (0: never). Prints the count.
_CHILD = r"""
import json, os, signal, sys
stage, kill_at, args = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
if stage in ("train", "encode"):
    import torch
    torch.set_num_threads(1)  # the same arithmetic as the reference run in the test process
from lead_core import cli
cli._load_stage(stage)
root = os.path.dirname(cli.__file__)
calls = 0
def count(frame, event, arg):
    global calls
    if event == "call" and frame.f_code.co_filename.startswith(root):
        calls += 1
        if calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
sys.setprofile(count)
code = cli.main([stage, *args])
sys.setprofile(None)
print("calls", calls)
sys.exit(code)
"""


def _counted_run(stage: str, args: list[str]) -> int:
    """Run the stage in this process as the child does; return its lead_core call count."""
    root = os.path.dirname(cli.__file__)
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        if event == "call" and frame.f_code.co_filename.startswith(root):
            calls += 1

    sys.setprofile(count)
    try:
        code = cli.main([stage, *args])
    finally:
        sys.setprofile(None)
    assert code == 0, f"lead {stage} failed"
    return calls


def _kill_at(stage: str, args: list[str], kill_at: int, cwd: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, stage, str(kill_at), json.dumps(args)],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, (
        f"lead {stage} was not killed at call {kill_at} (exit {child.returncode}):\n{child.stderr[-2000:]}"
    )


def _digest(path: Path) -> dict[str, str]:
    """relative path -> sha256 of every file at `path` (a file or a folder)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "queries_per_s"} for row in rows]


def _leftovers(outputs: list[Path]) -> list[Path]:
    """Entries beside the outputs that are not inputs: must be hidden temporaries of an output."""
    folders = {p.parent for p in outputs}
    return sorted(p for folder in folders for p in folder.iterdir() if p.name.startswith("."))


def _check_kill_and_rerun(stage, args, outputs, tmp_path, rng, volatile=(), extra_state=()):
    """Reference run, kill at a random call, check what is left, rerun, compare."""
    before = {folder: sorted(folder.iterdir()) for folder in {p.parent for p in outputs}}
    calls = _counted_run(stage, args)
    reference = {str(p): _digest(p) for p in outputs if p.name not in volatile}
    volatile_rows = {p.name: read_step_log(p) for p in outputs if p.name in volatile}
    for path in [*outputs, *extra_state]:
        _remove(path)

    kill_at = rng.randint(1, calls)
    _kill_at(stage, args, kill_at, tmp_path)
    for path in outputs:  # absent, or (killed after its commit, e.g. while tracking) complete
        if path.exists() and path.name not in volatile:
            assert _digest(path) == reference[str(path)], (
                f"lead {stage} killed at call {kill_at}/{calls} left a partial {path}"
            )
        elif path.exists():
            assert _without_timing(read_step_log(path)) == _without_timing(volatile_rows[path.name]), (
                f"lead {stage} killed at call {kill_at}/{calls} left a partial {path}"
            )
    names = "|".join(re.escape(p.name) for p in outputs)
    temporary = re.compile(rf"^\.+(?:{names})(?:\.(?:tmp|old)-[^/]+-\d+)+$")
    for path in _leftovers(outputs):
        assert temporary.match(path.name), f"lead {stage} killed at call {kill_at}/{calls} left {path}"

    assert cli.main([stage, *args]) == 0  # the rerun (with --resume for train) after the kill
    assert {str(p): _digest(p) for p in outputs if p.name not in volatile} == reference
    for name, rows in volatile_rows.items():
        path = next(p for p in outputs if p.name == name)
        assert _without_timing(read_step_log(path)) == _without_timing(rows)
    for folder, entries in before.items():  # the rerun removed the killed run's temporaries
        assert sorted(p for p in folder.iterdir() if p.name.startswith(".")) == [
            p for p in entries if p.name.startswith(".")
        ]
    return kill_at, calls


TOPICS = "cancer heart virus brain blood gene protein drug dose cell mice infection".split()


def _beir_dataset(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as fh:
        for i, t in enumerate(TOPICS):
            fh.write(json.dumps({"_id": f"d{i}", "title": t, "text": f"{t} results of the {t} study"}) + "\n")
    with open(folder / "queries.jsonl", "w") as fh:
        for i, t in enumerate(TOPICS):
            fh.write(json.dumps({"_id": f"q{i}", "text": f"what study results about {t}"}) + "\n")
    qrels = "".join(f"q{i}\td{i}\t1\n" for i in range(len(TOPICS)))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return folder


def test_each_long_stage_killed_at_a_random_point_leaves_nothing_and_reruns_identically(tmp_path, tiny_bert):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = random.Random(SEED)
    source, data, work = _beir_dataset(tmp_path / "beir"), tmp_path / "data", tmp_path / "work"
    work.mkdir()
    points = {}
    try:
        # ingest: one output folder
        ingest = ["--source", str(source), "--layout", "beir", "--split", "test", "--out", str(data)]
        points["ingest"] = _check_kill_and_rerun("ingest", ingest, [data], tmp_path, rng)
        corpus, queries, qrels = (str(data / f"{n}.parquet") for n in ("corpus", "queries", "qrels"))

        # bm25: three outputs committed together
        bm25_out = [work / "bm25.parquet", work / "bm25.trec", work / "bm25-groups.parquet"]
        bm25 = [
            "--corpus",
            corpus,
            "--queries",
            queries,
            "--qrels",
            qrels,
            "--k",
            "8",
            "--num-negatives",
            "3",
        ]
        bm25 += [
            "--out-run",
            str(bm25_out[0]),
            "--out-trec",
            str(bm25_out[1]),
            "--out-groups",
            str(bm25_out[2]),
        ]
        points["bm25"] = _check_kill_and_rerun("bm25", bm25, bm25_out, tmp_path, rng)

        # mine
        mined = work / "mined.parquet"
        mine = ["--run", str(bm25_out[0]), "--qrels", qrels, "--out-groups", str(mined)]
        mine += ["--depth", "8", "--num-negatives", "3"]
        points["mine"] = _check_kill_and_rerun("mine", mine, [mined], tmp_path, rng)

        # train: model and step log together; checkpoints every step, so a kill after one is
        # resumed (--resume true) and must still end bitwise where the uninterrupted run ends
        model, step_log, checkpoints = work / "model", work / "steps.jsonl", work / "model-ckpt"
        train = ["--groups", str(bm25_out[2]), "--corpus", corpus, "--queries", queries]
        train += ["--model", str(tiny_bert), "--architecture", "de", "--out", str(model)]
        train += ["--batch-size", "4", "--num-negatives", "3", "--query-max-length", "8"]
        train += ["--passage-max-length", "16", "--max-steps", "3", "--progress", "false"]
        train += ["--checkpoint-every", "1", "--checkpoint-dir", str(checkpoints), "--resume", "true"]
        train += ["--step-log", str(step_log)]
        points["train"] = _check_kill_and_rerun(
            "train",
            train,
            [model, step_log],
            tmp_path,
            rng,
            volatile={"steps.jsonl"},
            extra_state=[checkpoints],
        )

        # encode: shards of 4 rows, so the kill can fall between shards
        embeddings = work / "embeddings"
        encode = ["--model", str(model), "--input", corpus, "--out", str(embeddings)]
        encode += ["--batch-size", "4", "--shard-size", "4"]
        points["encode"] = _check_kill_and_rerun("encode", encode, [embeddings], tmp_path, rng)
    finally:
        torch.set_num_threads(threads)
    print("kill points (call k of N):", points)


def test_kfp_local_caches_no_entry_for_a_killed_task(tmp_path):
    """A task SIGKILLed mid-write fails the run and leaves no cache entry; the next run executes it."""
    pytest.importorskip("kfp")
    from kfp import dsl, local
    from kfp.dsl import Dataset, Output

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def killed_once(marker: str, out: Output[Dataset]):
        import os
        import signal

        with open(out.path, "w") as f:
            f.write("half")
            f.flush()
            if not os.path.exists(marker):
                open(marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            f.write(" and the rest")

    @dsl.pipeline(name="killed")
    def once(marker: str):
        killed_once(marker=marker)

    cache = tmp_path / "cache"
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        enable_caching=True,
        cache_root=str(cache),
    )
    with pytest.raises(RuntimeError):
        once(marker=str(tmp_path / "marker"))
    assert (tmp_path / "marker").exists()  # the task ran and was killed
    assert not list(cache.glob("*.json"))  # no cache entry for it
    once(marker=str(tmp_path / "marker"))  # so the next run executes it and completes
    entries = list(cache.glob("*.json"))
    assert len(entries) == 1 and "out" in entries[0].read_text()
