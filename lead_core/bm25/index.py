"""A bm25s index over a corpus artifact, built in streamed batches.

The corpus is read batch by batch from Parquet; each document (title + " " + text) becomes the
list of token ids that bm25s needs, and nothing else per document is kept in Python: the doc ids
stay one Arrow string array, looked up by position.

An index is saved to a folder once (`save`) and loaded by every query shard (`load`), so that
sharded retrieval scores against exactly the index a single task would build. Retrieval uses
bm25s's numba backend when numba is installed (a dependency: 29x less CPU per query at 1M passages),
else its numpy backend (`backend="auto"`). Both are
exact: the same scores and the same documents above each query's k-th score; they may keep
different documents among those tied at the k-th score (benchmarks/bm25_backends.py).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from bm25s.tokenization import Tokenizer
from tqdm.auto import tqdm

from lead_core.config import ConfigError
from lead_core.data.schema import (
    CORPUS,
    IDS,
    SchemaError,
    iter_batches,
    read_metadata,
    read_table,
    write_table,
)

logger = logging.getLogger(__name__)
# bm25s pins its logger at DEBUG, which bypasses the CLI's level; let it follow the root logger.
logging.getLogger("bm25s").setLevel(logging.NOTSET)

NO_STEMMER = ("", "none")
NO_STOPWORDS = ("", "none")
# bm25s's retrieval backends: numba scores and selects top-k in compiled code with its own threads;
# numpy runs each query's numpy calls in a ThreadPoolExecutor of `threads` (they release the GIL).
BACKENDS = ("auto", "numpy", "numba")


def resolve_backend(backend: str = "auto") -> str:
    """ "numba" or "numpy": "auto" is numba when it is installed."""
    if backend == "auto":
        return "numba" if importlib.util.find_spec("numba") else "numpy"
    if backend == "numba" and not importlib.util.find_spec("numba"):
        raise ConfigError("backend numba needs the numba package (pip install numba), or use numpy/auto")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown bm25s backend {backend!r}; expected one of {list(BACKENDS)}")
    return backend


# Files of a saved index folder besides bm25s's own (data/indices/indptr/vocab/params .index.*).
_PARAMS = "lead_bm25.json"
_TOKENIZER_VOCAB = "vocab.tokenizer.json"
_DOC_IDS = "doc_ids.parquet"


def available_cpus() -> int:
    """CPUs this process may use: its container's CPU limit (cgroup v2 ``cpu.max``) when set, else
    the cores it may run on. A pod sees all of its node's cores; threads beyond its limit only queue."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, int(quota) // int(period)))


def make_tokenizer(stopwords: str = "en", stemmer: str = "english") -> Tokenizer:
    """The bm25s tokenizer: lower-case, `\\w\\w+` words, stopword list and PyStemmer algorithm by name.

    `stopwords` is a bm25s language name ("en", "english", "de", ...) or "none"; `stemmer` is a
    PyStemmer algorithm ("english", "porter", ...) or "none".
    """
    stop = None if stopwords.lower() in NO_STOPWORDS else stopwords
    stem = None
    if stemmer.lower() not in NO_STEMMER:
        import Stemmer

        try:
            stem = Stemmer.Stemmer(stemmer)
        except KeyError:
            raise ConfigError(
                f"unknown stemmer {stemmer!r}; PyStemmer knows {sorted(Stemmer.algorithms())} (or 'none')"
            ) from None
    try:
        return Tokenizer(lower=True, stopwords=stop, stemmer=stem)
    except ValueError as err:
        raise ConfigError(f"stopwords {stopwords!r}: {err}") from None


def document_texts(batch: pa.RecordBatch) -> list[str]:
    """`title + " " + text` for each row of a corpus batch (the text BM25 indexes)."""
    return pc.binary_join_element_wise(batch.column("title"), batch.column("text"), " ").to_pylist()


@dataclass
class BM25Index:
    """A bm25s retriever, the tokenizer that built its vocabulary, and the doc id of each position."""

    retriever: bm25s.BM25
    tokenizer: Tokenizer
    doc_ids: pa.Array  # [num_docs] string
    params: dict  # stopwords, stemmer, k1, b, method: what a saved index must match

    @property
    def num_docs(self) -> int:
        return len(self.doc_ids)

    @classmethod
    def build(
        cls,
        corpus: str | Path,
        *,
        stopwords: str = "en",
        stemmer: str = "english",
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        batch_size: int = 10_000,
        backend: str = "auto",
    ) -> BM25Index:
        """Tokenize a corpus artifact in batches of `batch_size` rows and index it with bm25s."""
        tokenizer = make_tokenizer(stopwords, stemmer)
        total = read_metadata(corpus)["num_rows"]
        if total == 0:
            raise SchemaError(f"{corpus}: the corpus is empty")
        token_ids: list[list[int]] = []
        id_chunks: list[pa.Array] = []
        with tqdm(total=total, desc="bm25 tokenize corpus", unit="doc") as bar:
            for batch in iter_batches(corpus, CORPUS, batch_size=batch_size):
                token_ids.extend(
                    tokenizer.tokenize(document_texts(batch), update_vocab=True, show_progress=False)
                )
                id_chunks.append(batch.column("doc_id"))
                bar.update(batch.num_rows)
        doc_ids = pa.chunked_array(id_chunks, pa.string()).combine_chunks()
        retriever = bm25s.BM25(k1=k1, b=b, method=method, backend=resolve_backend(backend))
        # The tokenizer's vocabulary (stem or word -> id) numbers ids 0..V-1, as bm25s expects.
        retriever.index((token_ids, tokenizer.get_vocab_dict()), show_progress=True)
        logger.info("indexed %d documents, vocabulary of %d terms", len(doc_ids), len(retriever.vocab_dict))
        params = {"stopwords": stopwords, "stemmer": stemmer, "k1": k1, "b": b, "method": method}
        return cls(retriever=retriever, tokenizer=tokenizer, doc_ids=doc_ids, params=params)

    def save(self, folder: str | Path) -> None:
        """Write the index to `folder` (bm25s's arrays and vocabulary, the tokenizer's, the doc ids)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.retriever.save(str(folder), show_progress=False)
        self.tokenizer.save_vocab(str(folder), vocab_name=_TOKENIZER_VOCAB)
        write_table(pa.table({"id": self.doc_ids}), folder / _DOC_IDS, IDS)
        (folder / _PARAMS).write_text(json.dumps({**self.params, "num_docs": self.num_docs}, indent=1))

    @classmethod
    def load(cls, folder: str | Path, backend: str = "auto") -> BM25Index:
        """An index written by `save`, retrieving with bm25s's `backend` (auto, numpy or numba)."""
        folder = Path(folder)
        if not (folder / _PARAMS).is_file():
            raise SchemaError(f"{folder}: not a saved BM25 index (no {_PARAMS}; write one with --out-index)")
        params = json.loads((folder / _PARAMS).read_text())
        num_docs = params.pop("num_docs")
        tokenizer = make_tokenizer(params["stopwords"], params["stemmer"])
        tokenizer.load_vocab(str(folder), vocab_name=_TOKENIZER_VOCAB)
        retriever = bm25s.BM25.load(str(folder), backend=resolve_backend(backend), show_progress=False)
        doc_ids = read_table(folder / _DOC_IDS, IDS).column("id").combine_chunks()
        if len(doc_ids) != num_docs:
            raise SchemaError(f"{folder}: {len(doc_ids)} doc ids for an index of {num_docs} documents")
        return cls(retriever=retriever, tokenizer=tokenizer, doc_ids=doc_ids, params=params)

    def search(self, texts: list[str], k: int, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Top-k documents of each query text.

        Returns (positions [Q, k] int, scores [Q, k] float32), best first; k is capped at the
        corpus size. A document that shares no term with the query scores 0.
        """
        k = min(k, self.num_docs)
        tokens = self.tokenizer.tokenize(texts, update_vocab=False, show_progress=False)
        positions, scores = self.retriever.retrieve(tokens, k=k, show_progress=False, n_threads=threads)
        return np.asarray(positions), np.asarray(scores, dtype=np.float32)
