"""Memory a CPU stage will need, estimated from its inputs' sizes, checked before the stage starts.

The estimates are linear models of the peak RSS that `benchmarks/scale.py` measured (a synthetic
corpus with MS MARCO's statistics, results in benchmarks/README.md): base + bytes per passage +
bytes per query + bytes per run row. They are fitted on 100k-1M passages and 2k-30k queries and
extrapolated beyond, so they are approximate (tens of percent), never exact.

What happens when the estimate exceeds the container's memory:
  - a hard limit (the cgroup's ``memory.max``, which Kubernetes sets from the pod's memory limit)
    is enforced by the kernel: the stage would be OOM-killed, possibly hours in. The check raises
    `MemoryEstimateError` before the stage starts;
  - a request (``LEAD_MEMORY_REQUEST``, which the pipeline sets on every task to the memory it
    requests) is only what the scheduler reserves: the pod may use more where the node has it.
    The check logs a warning.
``LEAD_MEMORY_CHECK=warn`` turns the error into a warning (the estimate is rough; start anyway),
``LEAD_MEMORY_CHECK=off`` skips the check.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from lead_core.errors import UserError

logger = logging.getLogger(__name__)

GIB = 2**30
# Kubernetes' memory quantity suffixes (as in the pipeline's requests: "16Gi").
_SUFFIXES = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
# cgroup v2, then v1: the container's hard memory limit.
CGROUP_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
# A TREC run line ("qid Q0 docid rank score tag") has ~40 bytes: rows of a text run from its size.
TREC_RUN_BYTES_PER_LINE = 40
# MS MARCO's collection.tsv: 8,841,823 lines in ~3.06 GB; compressed text is ~4x smaller.
CORPUS_BYTES_PER_LINE = 350
COMPRESSION_RATIO = 4


class MemoryEstimateError(UserError, MemoryError):
    """A stage would need more memory than the container's hard limit allows."""


@dataclass(frozen=True)
class PeakModel:
    """Peak RSS = base + per_passage * passages + per_query * queries + per_run_row * run rows (bytes)."""

    base: float
    per_passage: float = 0.0
    per_query: float = 0.0
    per_run_row: float = 0.0
    measured: str = ""  # the measurement the coefficients come from


# Fitted by benchmarks/scale.py (its "peak_models"; benchmarks/README.md, "Scale"): linear fits c + d x
# of each stage's peak RSS (VmHWM of its own process) on 100k / 300k / 1M synthetic MS MARCO-like
# passages, 2k / 10k queries of BM25, 2k-30k x 1000-row runs for mine and 1k-6,980 for evaluate.
PEAK_MODELS: dict[str, PeakModel] = {
    # 0.42 / 0.54 / 0.62 GiB at 100k / 300k / 1M passages (the batch, 8-byte id hashes, Arrow's pool)
    "ingest": PeakModel(base=0.47e9, per_passage=209, measured="ingest 100k-1M passages"),
    # the index build in the task (0.67 / 1.23 / 3.07 GiB at 100k / 300k / 1M: tokenized corpus as
    # Python lists), plus per query the retrieval's state without the TREC file (0.80 -> 0.89 GiB
    # from 2k to 10k queries), plus per row of the TREC file (the export reads and sorts the whole run:
    # 1.13 -> 3.41 GiB from 2M to 10M rows)
    "bm25": PeakModel(
        base=0.45e9,
        per_passage=2851,
        per_query=12_400,
        per_run_row=294,
        measured="bm25 100k-1M, 2k-10k queries",
    ),
    # a query shard: the saved index loaded (0.88 / 1.20 / 1.77 GiB at 100k / 300k / 1M with 2k queries)
    "bm25-shard": PeakModel(
        base=0.86e9, per_passage=1006, per_query=12_400, per_run_row=294, measured="bm25-shard 100k-1M"
    ),
    # the merge of shards: the TREC export of the merged run
    "bm25-merge": PeakModel(base=0.45e9, per_run_row=294, measured="bm25 TREC export, 2M-10M rows"),
    # 0.36 / 1.09 / 2.97 GiB for runs of 2M / 10M / 30M rows
    "mine": PeakModel(base=0.18e9, per_run_row=100, measured="mine 2M-30M run rows"),
    # 0.40 / 0.86 / 1.81 GiB for runs of 1M / 3M / 6.98M rows
    "evaluate": PeakModel(base=0.17e9, per_run_row=253, measured="evaluate 1M-6.98M run rows"),
}


def estimate_peak_bytes(stage: str, *, passages: int = 0, queries: int = 0, run_rows: int = 0) -> int:
    """Estimated peak RSS in bytes of `stage` (a key of PEAK_MODELS) on inputs of these sizes."""
    if stage not in PEAK_MODELS:
        raise ValueError(f"no memory model for stage {stage!r}; known: {sorted(PEAK_MODELS)}")
    m = PEAK_MODELS[stage]
    return int(m.base + m.per_passage * passages + m.per_query * queries + m.per_run_row * run_rows)


def parse_quantity(text: str) -> int:
    """Bytes of a Kubernetes memory quantity ("16Gi", "512Mi", "8G", "1073741824")."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kMGT]i?|)\s*", text)
    if not match:
        raise UserError(f"memory quantity {text!r} is not a number with a suffix like Gi, Mi, G or M")
    return int(float(match.group(1)) * _SUFFIXES[match.group(2)])


def hard_limit_bytes(files: tuple[str, ...] | None = None) -> int | None:
    """The cgroup's memory limit in bytes, or None where there is none ("max", or v1's huge sentinel)."""
    for name in CGROUP_LIMIT_FILES if files is None else files:
        try:
            text = Path(name).read_text().strip()
        except OSError:
            continue
        if text == "max" or not text.isdigit() or int(text) >= 2**60:
            return None
        return int(text)
    return None


def run_rows(path: str | Path) -> int:
    """Rows of a run artifact: the Parquet footer's count, or a TREC file's size over ~40 bytes a line."""
    path = Path(path)
    if path.suffix == ".parquet" or (path.is_file() and _starts_with(path, b"PAR1")):
        from lead_core.data.schema import read_metadata

        return int(read_metadata(path)["num_rows"])
    return path.stat().st_size // TREC_RUN_BYTES_PER_LINE if path.is_file() else 0


def _starts_with(path: Path, magic: bytes) -> bool:
    with path.open("rb") as fh:  # closed at once: the check runs before the stage opens the file itself
        return fh.read(len(magic)) == magic


def passages_in_file(path: str | Path) -> int:
    """Passages of a corpus file from its size (MS MARCO's ~350 bytes a line; x4 for a compressed file)."""
    path = Path(path)
    size = path.stat().st_size if path.is_file() else 0
    compressed = path.suffix in (".gz", ".bz2", ".xz", ".zst", ".zip")
    return size * (COMPRESSION_RATIO if compressed else 1) // CORPUS_BYTES_PER_LINE


def _sizes_text(passages: int, queries: int, run_rows: int) -> str:
    parts = [
        f"{v:,} {name}"
        for name, v in (("passages", passages), ("queries", queries), ("run rows", run_rows))
        if v
    ]
    return " and ".join(parts) or "its inputs"


def check_memory(
    stage: str,
    *,
    passages: int = 0,
    queries: int = 0,
    run_rows: int = 0,
    limit_files: tuple[str, ...] | None = None,
) -> int:
    """Estimate `stage`'s peak memory; raise MemoryEstimateError above the hard limit, warn above the
    request (see the module docstring). Returns the estimate in bytes."""
    mode = os.environ.get("LEAD_MEMORY_CHECK", "error").strip().lower()
    if mode == "off":
        return 0
    estimate = estimate_peak_bytes(stage, passages=passages, queries=queries, run_rows=run_rows)
    what = (
        f"{stage}: estimated peak memory {estimate / GIB:.1f} GiB for {_sizes_text(passages, queries, run_rows)} "
        f"(benchmarks/scale.py's fit)"
    )
    advice = f"raise {stage}'s memory in components/placement.py RESOURCES or the pod's limit" + (
        ", or split the queries into shards" if stage == "bm25" and queries else ""
    )
    limit = hard_limit_bytes(limit_files)
    if limit is not None and estimate > limit:
        message = f"{what}, but the container's memory limit is {limit / GIB:.1f} GiB: {advice}"
        if mode == "warn":
            logger.warning("%s (LEAD_MEMORY_CHECK=warn: starting anyway)", message)
        else:
            raise MemoryEstimateError(f"{message}; LEAD_MEMORY_CHECK=warn starts it anyway")
        return estimate
    request = os.environ.get("LEAD_MEMORY_REQUEST")
    if request and estimate > parse_quantity(request):
        logger.warning(
            "%s, more than the task's memory request %s (LEAD_MEMORY_REQUEST; a request is not a limit, "
            "so it may still fit): %s",
            what,
            request,
            advice,
        )
    return estimate
