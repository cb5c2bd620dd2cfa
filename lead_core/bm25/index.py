"""A bm25s index over a corpus artifact, built in streamed batches.

The corpus is read batch by batch from Parquet; each document (title + " " + text) becomes the
list of token ids that bm25s needs, and nothing else per document is kept in Python: the doc ids
stay one Arrow string array, looked up by position.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from bm25s.tokenization import Tokenizer
from tqdm.auto import tqdm

from lead_core.config import ConfigError
from lead_core.data.schema import CORPUS, SchemaError, iter_batches, read_metadata

logger = logging.getLogger(__name__)
# bm25s pins its logger at DEBUG, which bypasses the CLI's level; let it follow the root logger.
logging.getLogger("bm25s").setLevel(logging.NOTSET)

NO_STEMMER = ("", "none")
NO_STOPWORDS = ("", "none")


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
        retriever = bm25s.BM25(k1=k1, b=b, method=method)
        # The tokenizer's vocabulary (stem or word -> id) numbers ids 0..V-1, as bm25s expects.
        retriever.index((token_ids, tokenizer.get_vocab_dict()), show_progress=True)
        logger.info("indexed %d documents, vocabulary of %d terms", len(doc_ids), len(retriever.vocab_dict))
        return cls(retriever=retriever, tokenizer=tokenizer, doc_ids=doc_ids)

    def search(self, texts: list[str], k: int, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Top-k documents of each query text.

        Returns (positions [Q, k] int, scores [Q, k] float32), best first; k is capped at the
        corpus size. A document that shares no term with the query scores 0.
        """
        k = min(k, self.num_docs)
        tokens = self.tokenizer.tokenize(texts, update_vocab=False, show_progress=False)
        positions, scores = self.retriever.retrieve(tokens, k=k, show_progress=False, n_threads=threads)
        return np.asarray(positions), np.asarray(scores, dtype=np.float32)
