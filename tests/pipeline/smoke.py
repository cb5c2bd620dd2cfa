"""The smoke pipeline as the slow tests run it: a small SciFact and one local run through the CLI."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "pipelines" / "lead_msmarco.py"


def scifact_subset(src: Path, dst: Path, train_queries=40, test_queries=30, extra_docs=400) -> Path:
    """A small BEIR-layout SciFact: some queries of each split, their judged documents and a few others."""
    (dst / "qrels").mkdir(parents=True)
    keep_docs, keep_queries = set(), set()
    for split, limit in (("train", train_queries), ("test", test_queries)):
        lines = (src / "qrels" / f"{split}.tsv").read_text().splitlines()
        header, rows = lines[0], [line.split("\t") for line in lines[1:] if line.strip()]
        qids = list(dict.fromkeys(r[0] for r in rows))[:limit]
        kept = [r for r in rows if r[0] in qids]
        keep_queries.update(qids)
        keep_docs.update(r[1] for r in kept)
        (dst / "qrels" / f"{split}.tsv").write_text("\n".join([header, *("\t".join(r) for r in kept)]) + "\n")
    with gzip.open(src / "corpus.jsonl.gz", "rt") as f, open(dst / "corpus.jsonl", "w") as out:
        for line in f:
            doc_id = json.loads(line)["_id"]
            if doc_id in keep_docs or extra_docs > 0:
                extra_docs -= doc_id not in keep_docs
                out.write(line)
    with open(src / "queries.jsonl") as f, open(dst / "queries.jsonl", "w") as out:
        out.writelines(line for line in f if json.loads(line)["_id"] in keep_queries)
    return dst


def run_smoke(workdir: Path, dataset: Path, tracking_uri: str, *extra: str) -> dict:
    """One local smoke run of `pipelines/lead_msmarco.py` tracked on `tracking_uri`; its summary JSON
    (parent run id, executed and cached stages, metrics, exported student)."""
    summary = workdir / f"summary-{len(list(workdir.glob('summary-*')))}.json"
    cmd = [sys.executable, str(SCRIPT), "--local", "--profile", "smoke", "--dataset", str(dataset)]
    cmd += ["--workdir", str(workdir), "--summary-json", str(summary), *extra]
    # A fixed code fingerprint: other edits to lead_core between runs must not empty the cache.
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "LEAD_CODE_FINGERPRINT": "test-smoke-runs"}
    env.pop("LEAD_PARENT_RUN_ID", None)
    # A generous limit: one smoke run took 15 min on the 2-core machine shared with other jobs.
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert "student (distilled)" in done.stdout  # the printed metric table
    return json.loads(summary.read_text())
