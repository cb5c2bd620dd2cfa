"""`lead ingest`: read an MS MARCO or BEIR dataset into corpus/queries/qrels Parquet artifacts.

A dataset's splits share one corpus (MS MARCO: 8.8M passages for train, dev and the TREC DL
topics), so it can be ingested once and stored once: ``what="corpus"`` writes only
``corpus.parquet``; ``what="split"`` writes only the split's ``queries.parquet`` and
``qrels.parquet`` (and ``run.parquet`` / ``groups.parquet``), with the qrels checked against the doc
ids of that ingested ``corpus`` folder (read as 8-byte hashes, one column batch at a time). The
default ``what="all"`` does both into one folder, for a single split from a shell; that folder also
serves as ``corpus`` of another split.

The corpus is streamed in batches straight into Parquet, so memory does not grow with one Python
object per passage (the real MS MARCO collection has 8.8M). Document ids are checked through 8-byte
hashes instead of a set of strings: duplicates by sorting the hash array at the end (then one more
pass over the file names the lines), unknown qrels documents by binary search in it.

Queries without any qrels in the split are dropped by default, for both layouts. That is BEIR's
convention (queries.jsonl holds every split's queries; a split is the queries its qrels judge) and
what MS MARCO's ``dev.small`` and TREC DL topics already are; it also keeps training splits free of
queries with no positive. ``keep_queries_without_qrels`` keeps them (e.g. to search the eval split).

Documents: a title-only document (empty text) is an ordinary document. A document with neither
title nor text (empty or whitespace only) is kept by default, as BEIR's ``GenericDataLoader`` does
(beir/datasets/data_loader.py reads every record's ``title`` and ``text`` with ``dict.get`` and
checks neither, so such a document stays in its corpus and its qrels stay judged);
``empty_documents="skip"`` leaves them out. Either way one warning counts them and names the first
few ids and lines. Skipping is the user's explicit request to remove those documents, so qrels that
judge one are dropped too (every qrel of the artifact must name a corpus document, the invariant
that ``drop_unknown_qrels`` also keeps) and reported by one warning of the same form; they are
counted as ``qrels_dropped_skipped_doc``, apart from ``qrels_dropped_unknown_doc``, so a document
missing from the corpus still fails unless ``drop_unknown_qrels`` is set. A corpus in which every
document is empty is an error: it is almost surely not in the layout's format.

The output folder is written atomically: on any error nothing appears at ``out``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from lead_core.artifacts import atomic_path, check_writable
from lead_core.config import ConfigError, to_dict
from lead_core.data import beir, msmarco
from lead_core.data.ids import IdHashes, hash_ids
from lead_core.data.io import resolve_dir
from lead_core.data.schema import (
    CORPUS,
    GROUPS,
    IDS,
    QRELS,
    QUERIES,
    RUN,
    SchemaError,
    iter_batches,
    open_writer,
    read_metadata,
    read_table,
    write_table,
)
from lead_core.resources import check_memory, passages_in_file
from lead_core.tracking import stage_run

logger = logging.getLogger(__name__)


@dataclass
class Config:
    source: str = field(
        metadata={
            "help": "dataset folder or URI (local path, http(s)/s3/gs, a .zip/.tar.gz archive), "
            "or beir:<name> for BEIR's public archive"
        }
    )
    layout: Literal["msmarco", "beir"] = field(metadata={"help": "file layout of the dataset"})
    out: str = field(
        metadata={
            "help": "output folder (replaced atomically): corpus.parquet and/or the split's "
            "queries.parquet and qrels.parquet, as --what says"
        }
    )
    split: str = field(
        default="", metadata={"help": "query split, e.g. train, dev, test, dl19 (not with --what corpus)"}
    )
    what: Literal["all", "corpus", "split"] = field(
        default="all",
        metadata={
            "help": "all: the split with its corpus in one folder; corpus: only the corpus, once for "
            "every split of the dataset; split: only the split's queries and qrels, checked against "
            "the doc ids of --corpus"
        },
    )
    corpus: str = field(
        default="",
        metadata={
            "help": "--what split: the folder holding corpus.parquet of the same dataset (written by "
            "--what corpus or --what all)"
        },
    )
    drop_unknown_qrels: bool = field(
        default=False,
        metadata={
            "help": "drop qrels whose document is not in the corpus (pooled corpora) instead of failing"
        },
    )
    keep_queries_without_qrels: bool = field(
        default=False, metadata={"help": "keep the split's queries that have no qrels (dropped by default)"}
    )
    official_run: bool = field(
        default=False, metadata={"help": "msmarco: also write run.parquet from top1000.<split>"}
    )
    official_groups: bool = field(
        default=False,
        metadata={
            "help": "msmarco: also write groups.parquet from qidpidtriples.<split>... (official negatives)"
        },
    )
    empty_documents: Literal["keep", "skip"] = field(
        default="keep",
        metadata={
            "help": "documents with neither title nor text: keep them (BEIR's loader does) or skip them "
            "and the qrels that judge them; either way one warning counts them"
        },
    )
    batch_size: int = field(default=100_000, metadata={"help": "corpus lines per Parquet batch"})


def _report_duplicate(path: Path, batches: Callable[[], Iterator[pa.Table]], suspects: np.ndarray) -> None:
    """Rescan the corpus and raise naming both lines of the first duplicate id among `suspects` hashes.

    Returns without error when the suspects were only hash collisions of different ids.
    """
    first_line: dict[str, int] = {}
    for batch in batches():
        hit = np.isin(hash_ids(batch.column("doc_id")), suspects)
        if not hit.any():
            continue
        rows = batch.filter(pa.array(hit))
        for doc_id, line in zip(rows.column("doc_id").to_pylist(), rows.column("line").to_pylist()):
            if doc_id in first_line:
                raise SchemaError(
                    f"{path}: line {line}: duplicate doc id {doc_id!r} (first at line {first_line[doc_id]})"
                )
            first_line[doc_id] = line


def _duplicated(sorted_hashes: np.ndarray) -> np.ndarray:
    return np.unique(sorted_hashes[1:][sorted_hashes[1:] == sorted_hashes[:-1]])


# How many ids (with their lines) a warning about empty documents or their qrels names.
FIRST_IDS = 5


@dataclass
class EmptyDocuments:
    """The corpus documents with neither title nor text: how many, the first few, and (if skipped)
    their ids, to tell their qrels apart from qrels of documents not in the file."""

    count: int = 0
    first: list[tuple[str, int]] = field(default_factory=list)  # (doc id, line)
    skipped: pa.ChunkedArray | None = None  # the skipped documents' ids (strings)


def _named(pairs: list[tuple[str, int]], total: int) -> str:
    """ "'d1' (line 3), 'd7' (line 9), ..." for the first pairs of `total`."""
    text = ", ".join(f"{doc_id!r} (line {line})" for doc_id, line in pairs)
    return text + (", ..." if total > len(pairs) else "")


def write_corpus(
    path: Path,
    batches: Callable[[], Iterator[pa.Table]],
    out: Path,
    config: dict,
    empty_documents: str = "keep",
) -> tuple[int, IdHashes, EmptyDocuments]:
    """Stream `batches()` (tables with the corpus columns and `line`) into `out`; check ids are unique.

    Documents with neither title nor text are written or left out as `empty_documents` ("keep" or
    "skip") says. Returns (number of documents written, their id hashes, the empty documents).
    Memory: one batch plus 8 bytes per document.
    """
    hashes: list[np.ndarray] = []
    skipped: list[np.ndarray] = []
    skipped_ids: list[pa.Array] = []
    empty = EmptyDocuments()
    read = 0
    with open_writer(out, CORPUS, config) as writer, tqdm(desc="ingest corpus", unit=" docs") as bar:
        for batch in batches():
            h = hash_ids(batch.column("doc_id"))
            h_sorted = np.sort(h)
            dup = _duplicated(h_sorted)
            if len(dup):  # within the batch: report it before the writer's row-based check does
                _report_duplicate(path, batches, dup)
            read += batch.num_rows
            blank = pc.and_(
                msmarco.is_blank(batch.column("title")), msmarco.is_blank(batch.column("text"))
            ).to_numpy(zero_copy_only=False)
            if blank.any():
                rows = np.flatnonzero(blank)
                empty.count += len(rows)
                for i in rows[: FIRST_IDS - len(empty.first)]:
                    empty.first.append((batch.column("doc_id")[i].as_py(), batch.column("line")[i].as_py()))
                if empty_documents == "skip":
                    skipped.append(h[blank])
                    skipped_ids.append(batch.column("doc_id").filter(pa.array(blank)))
                    batch = batch.filter(pa.array(~blank))
                    h_sorted = np.sort(h[~blank])
            writer.write(batch)
            hashes.append(h_sorted)
            bar.update(batch.num_rows)
        count = writer.num_rows
    if read and empty.count == read:
        raise SchemaError(
            f"{path}: all {read} documents have neither title nor text: is the file in this layout's "
            "format (BEIR: JSON lines with '_id', 'title', 'text'; MS MARCO: pid<TAB>passage)?"
        )
    if count == 0:
        raise SchemaError(f"{path}: no documents in the corpus")
    if empty.count:
        action = (
            "left out (empty_documents=skip)"
            if empty_documents == "skip"
            else "kept, as BEIR's loader does (--empty-documents skip leaves them out)"
        )
        logger.warning(
            "%s: %d of %d documents have neither title nor text, %s: %s",
            path,
            empty.count,
            read,
            action,
            _named(empty.first, empty.count),
        )
    all_hashes = np.concatenate(hashes + skipped)  # an id may not repeat, skipped or not
    all_hashes.sort()
    dup = _duplicated(all_hashes)
    if len(dup):
        _report_duplicate(path, batches, dup)
    if skipped:
        empty.skipped = pa.chunked_array(skipped_ids, pa.string())
        all_hashes = np.concatenate(hashes)
    del hashes, skipped
    return count, IdHashes(all_hashes), empty


def _qrels_at(qrels: pa.Table, mask: np.ndarray) -> list[tuple[str, int]]:
    """(doc id, line) of the first FIRST_IDS qrels where `mask` is True."""
    rows = np.flatnonzero(mask)[:FIRST_IDS]
    return [(qrels.column("doc_id")[i].as_py(), qrels.column("line")[i].as_py()) for i in rows]


def _first_false(mask: np.ndarray) -> int:
    return int(np.flatnonzero(~mask)[0])


def _is_in(values: pa.ChunkedArray | pa.Array, value_set: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Boolean mask [len(values)]: which values are in `value_set` (Arrow's hash lookup)."""
    if isinstance(value_set, pa.ChunkedArray):
        value_set = value_set.combine_chunks()
    return pc.is_in(values, value_set=value_set).to_numpy(zero_copy_only=False)


def _check_known(path: Path, table: pa.Table, column: str, what: str, mask: np.ndarray, where: str) -> None:
    """SchemaError naming the line of the first row of `table` whose `column` is not known (mask False)."""
    if not mask.all():
        i = _first_false(mask)
        raise SchemaError(
            f"{path}: line {table.column('line')[i].as_py()}: {what} {table.column(column)[i].as_py()!r} "
            f"is not in {where} ({int((~mask).sum())} of {len(mask)} lines name unknown {what}s)"
        )


def _corpus_file(folder: Path, layout: str) -> tuple[Path, Callable[[Path, int], Iterator[pa.Table]]]:
    """The dataset's corpus file and the reader that streams it in batches."""
    if layout == "beir":
        return beir.corpus_path(folder), beir.iter_corpus
    return msmarco.collection_path(folder), msmarco.iter_collection


@dataclass
class _SplitFiles:
    queries: Path
    qrels: Path
    read_queries: Callable[[Path], pa.Table]
    read_qrels: Callable[[Path], pa.Table]


def _split_files(folder: Path, layout: str, split: str) -> _SplitFiles:
    if layout == "beir":
        return _SplitFiles(
            beir.queries_path(folder), beir.qrels_path(folder, split), beir.read_queries, beir.read_qrels
        )
    return _SplitFiles(
        msmarco.find_split_file(folder, "queries", split),
        msmarco.find_split_file(folder, "qrels", split),
        msmarco.read_queries,
        msmarco.read_qrels,
    )


CORPUS_FILE = "corpus.parquet"
# The ids of the empty documents that empty_documents="skip" left out of corpus.parquet (written
# only when there were some): a split ingested later against this corpus drops the qrels that
# judge them, as the one-shot ingest does, instead of failing on documents missing from the corpus.
SKIPPED_FILE = "skipped_documents.parquet"


@dataclass
class CorpusIds:
    """The doc ids a split's qrels are checked against: the corpus's, and those of the empty
    documents left out of it (None when none were skipped); `where` names the corpus in errors."""

    docs: IdHashes
    skipped: IdHashes | None
    where: str


def _write_corpus_folder(
    corpus: Path,
    iter_corpus: Callable[[Path, int], Iterator[pa.Table]],
    config: Config,
    tmp: Path,
    meta: dict,
) -> tuple[dict[str, int], CorpusIds]:
    """Stream the dataset's corpus file into `tmp`/corpus.parquet (and the skipped ids beside it);
    its counts and ids."""

    def batches() -> Iterator[pa.Table]:
        return iter_corpus(corpus, config.batch_size)

    count, docs, empty = write_corpus(corpus, batches, tmp / CORPUS_FILE, meta, config.empty_documents)
    skipped = None
    if empty.skipped is not None:
        write_table(pa.table({"id": empty.skipped}), tmp / SKIPPED_FILE, IDS, meta)
        skipped = IdHashes(hash_ids(empty.skipped))
    counts = {
        "docs": count,
        "empty_docs": empty.count,
        "empty_docs_skipped": empty.count if empty.skipped is not None else 0,
    }
    return counts, CorpusIds(docs, skipped, str(corpus))


def corpus_artifact(folder: Path) -> Path:
    """corpus.parquet of an ingested corpus folder (`what` corpus or all), or an error naming it."""
    path = folder / CORPUS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file: --corpus / corpus takes the folder that `lead ingest --what corpus` "
            "(or --what all) wrote"
        )
    return path


def read_corpus_ids(folder: Path) -> CorpusIds:
    """The ids of an ingested corpus folder (`what` corpus or all): corpus.parquet's doc_id column
    read in batches into 8-byte hashes (memory: 8 bytes per document plus one batch)."""
    path = corpus_artifact(folder)
    hashes = [
        hash_ids(batch.column("doc_id"))
        for batch in iter_batches(path, CORPUS, batch_size=1_000_000, columns=["doc_id"])
    ]
    docs = IdHashes(np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64))
    skipped_path = folder / SKIPPED_FILE
    skipped = (
        IdHashes(hash_ids(read_table(skipped_path, IDS).column("id"))) if skipped_path.is_file() else None
    )
    return CorpusIds(docs, skipped, str(path))


def resolve_source(source: str, layout: str) -> Path:
    """The local dataset folder for `source` (``beir:<name>`` -> BEIR's public archive, downloaded once)."""
    if source.startswith("beir:"):
        if layout != "beir":
            raise ConfigError(f"source {source!r} is a BEIR dataset; use --layout beir")
        return resolve_dir(beir.archive_url(source.removeprefix("beir:")))
    return resolve_dir(source)


def _official_run(
    folder: Path, split: str, queries: pa.Table, docs: IdHashes, out: Path, config: dict
) -> int:
    """top1000.<split> -> run.parquet; its queries must be the split's, its passages the corpus's."""
    path = msmarco.find_split_file(folder, "top1000", split)
    table = msmarco.read_top1000(path)
    known_queries = _is_in(table.column("query_id"), queries.column("query_id"))
    _check_known(path, table, "query_id", "query", known_queries, "the split's queries")
    _check_known(path, table, "doc_id", "passage", docs.contains(table.column("doc_id")), "the collection")
    write_table(table, out, RUN, config)
    return table.num_rows


def _official_groups(
    folder: Path, split: str, queries: pa.Table, docs: IdHashes, out: Path, config: dict
) -> int:
    """qidpidtriples.<split>... -> groups.parquet (negative_source "official-triples"), ids checked."""
    try:
        path = msmarco.find_split_file(folder, "qidpidtriples", split)
    except msmarco.SplitNotFoundError as err:
        text_triples = [p.name for p in folder.glob(f"triples.{split}*")]
        hint = f"; {text_triples} hold texts, not ids: use qidpidtriples" if text_triples else ""
        raise msmarco.SplitNotFoundError(f"{err}{hint}") from None
    groups = msmarco.read_qidpidtriples(path)
    known_queries = _is_in(groups.column("query_id"), queries.column("query_id"))
    _check_known(path, groups, "query_id", "query", known_queries, "the split's queries")
    for column in ("positive_ids", "negative_ids"):
        flat = pc.list_flatten(groups.column(column))
        known = docs.contains(flat)
        if not known.all():
            i = _first_false(known)
            row = pc.list_parent_indices(groups.column(column)).to_numpy()[i]
            raise SchemaError(
                f"{path}: line {groups.column('line')[row].as_py()} (the first line of query "
                f"{groups.column('query_id')[row].as_py()!r}): passage {flat[i].as_py()!r} "
                f"is not in the collection ({int((~known).sum())} such ids)"
            )
    write_table(groups, out, GROUPS, config)
    return groups.num_rows


def _check_config(config: Config) -> None:
    """Contradicting or missing fields, before anything is read."""
    if config.batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {config.batch_size}")
    if config.layout == "beir" and (config.official_run or config.official_groups):
        raise ConfigError(
            "official_run and official_groups read MS MARCO's top1000/qidpidtriples: use --layout msmarco"
        )
    if config.what == "corpus":
        given = [
            name
            for name, value in (
                ("split", config.split),
                ("corpus", config.corpus),
                ("official_run", config.official_run),
                ("official_groups", config.official_groups),
            )
            if value
        ]
        if given:
            raise ConfigError(f"what=corpus writes only the corpus; {given} belong to a split (what=split)")
        return
    if not config.split:
        raise ConfigError(f"what={config.what} needs a split (--split)")
    if config.what == "split" and not config.corpus:
        raise ConfigError("what=split needs corpus (--corpus): the folder of the ingested corpus")
    if config.what == "all" and config.corpus:
        raise ConfigError("what=all ingests the corpus itself; corpus (--corpus) goes with what=split")


def _write_split(
    files: _SplitFiles,
    qrels: pa.Table,
    queries: pa.Table,
    corpus: CorpusIds,
    folder: Path,
    config: Config,
    tmp: Path,
    meta: dict,
) -> dict[str, int]:
    """The split's qrels checked against `corpus` and written with its queries (and the official run
    and groups) into `tmp`; the counts."""
    counts: dict[str, int] = {}
    known = corpus.docs.contains(qrels.column("doc_id"))
    at_skipped = np.zeros(len(known), dtype=bool)
    if corpus.skipped is not None:
        at_skipped = ~known & corpus.skipped.contains(qrels.column("doc_id"))
    counts["qrels_dropped_skipped_doc"] = int(at_skipped.sum())
    if at_skipped.any():
        logger.warning(
            "%s: dropped %d of %d qrels whose document has neither title nor text and was "
            "skipped (empty_documents=skip): %s",
            files.qrels,
            int(at_skipped.sum()),
            qrels.num_rows,
            _named(_qrels_at(qrels, at_skipped), int(at_skipped.sum())),
        )
        qrels = qrels.filter(pa.array(~at_skipped))
        known = known[~at_skipped]
        if qrels.num_rows == 0:
            raise SchemaError(
                f"{files.qrels}: every qrel judges a skipped empty document; use --empty-documents keep"
            )
    unknown = int((~known).sum())
    if unknown and not config.drop_unknown_qrels:
        i = _first_false(known)
        raise SchemaError(
            f"{files.qrels}: line {qrels.column('line')[i].as_py()}: document {qrels.column('doc_id')[i].as_py()!r} "
            f"is not in the corpus {corpus.where} ({unknown} of {qrels.num_rows} qrels name unknown "
            "documents; drop_unknown_qrels / --drop-unknown-qrels drops them)"
        )
    if unknown:
        logger.warning(
            "%s: dropped %d of %d qrels whose document is not in the corpus: %s",
            files.qrels,
            unknown,
            qrels.num_rows,
            _named(_qrels_at(qrels, ~known), unknown),
        )
        qrels = qrels.filter(pa.array(known))
        if qrels.num_rows == 0:
            raise SchemaError(f"{files.qrels}: no qrels left after dropping those outside the corpus")
    counts["qrels_dropped_unknown_doc"] = unknown

    counts["queries_in_file"] = queries.num_rows
    if not config.keep_queries_without_qrels:
        judged = _is_in(queries.column("query_id"), pc.unique(qrels.column("query_id")))
        queries = queries.filter(pa.array(judged))
    counts["queries"] = queries.num_rows
    counts["queries_dropped_without_qrels"] = counts["queries_in_file"] - queries.num_rows
    counts["qrels"] = qrels.num_rows
    write_table(queries, tmp / "queries.parquet", QUERIES, meta)
    write_table(qrels, tmp / "qrels.parquet", QRELS, meta)
    if config.official_run:
        counts["run_rows"] = _official_run(
            folder, config.split, queries, corpus.docs, tmp / "run.parquet", meta
        )
    if config.official_groups:
        counts["groups"] = _official_groups(
            folder, config.split, queries, corpus.docs, tmp / "groups.parquet", meta
        )
    return counts


def run(config: Config) -> dict:
    """Ingest `config.source` into `config.out`: corpus.parquet and/or the split's queries.parquet and
    qrels.parquet, as `config.what` says; returns the counts."""
    _check_config(config)
    meta = to_dict(config)
    out = Path(config.out)
    check_writable(out)  # before a download or a long read
    with stage_run("ingest", meta) as tracker:
        folder = resolve_source(config.source, config.layout)
        if config.what != "split":
            corpus_file, iter_corpus = _corpus_file(folder, config.layout)
            passages = passages_in_file(corpus_file)
        else:
            passages = int(read_metadata(corpus_artifact(Path(config.corpus)))["num_rows"])
        files = _split_files(folder, config.layout, config.split) if config.what != "corpus" else None
        # the model fitted to streaming the corpus; a split alone holds 8 bytes per passage, so for
        # what=split it is an upper bound
        check_memory("ingest", passages=passages)
        if files is not None:  # a split's files fail before the (long) corpus read
            qrels = files.read_qrels(files.qrels)
            queries = files.read_queries(files.queries)
            _check_known(
                files.qrels,
                qrels,
                "query_id",
                "query",
                _is_in(qrels.column("query_id"), queries.column("query_id")),
                str(files.queries),
            )

        counts: dict[str, int] = {}
        with atomic_path(out) as tmp:
            tmp.mkdir()
            if config.what == "split":
                corpus = read_corpus_ids(Path(config.corpus))
            else:
                corpus_counts, corpus = _write_corpus_folder(corpus_file, iter_corpus, config, tmp, meta)
                counts.update(corpus_counts)
            if files is not None:
                counts.update(_write_split(files, qrels, queries, corpus, folder, config, tmp, meta))
        logger.info(
            "ingest %s (%s, %s%s) -> %s: %s",
            config.source,
            config.layout,
            "corpus" if config.what == "corpus" else f"split {config.split}",
            " with its corpus" if config.what == "all" else "",
            out,
            counts,
        )
        tracker.log_metrics({f"ingest/{k}": v for k, v in counts.items()})
    return counts
