"""`lead evaluate`: TREC measures of a run, and a paired t-test against a baseline run.

Prints a table (or, with --json, exactly one JSON object measure -> value on stdout); writes the
metrics JSON and the per-query values when asked.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from lead_core.artifacts import atomic_outputs, check_writable
from lead_core.config import to_dict
from lead_core.data.trec import read_qrels, read_run
from lead_core.evaluate.metrics import DEFAULT_METRICS, evaluate_run, format_table, paired_ttest, qrels_dict
from lead_core.resources import check_memory, run_rows
from lead_core.tracking import stage_run

logger = logging.getLogger(__name__)


@dataclass
class Config:
    run: str = field(metadata={"help": "run to evaluate (RUN Parquet or TREC run file)"})
    qrels: str = field(metadata={"help": "qrels (QRELS Parquet or TREC qrels file)"})
    metrics: list[str] = field(
        default_factory=lambda: list(DEFAULT_METRICS),
        metadata={"help": "ir_measures names, comma-separated (e.g. nDCG@10,RR@10,AP@1000,R@100,P@5)"},
    )
    relevance_level: int = field(
        default=1,
        metadata={"help": "lowest grade that counts as relevant for binary measures (TREC DL passage: 2)"},
    )
    baseline: str | None = field(
        default=None,
        metadata={"help": "a second run: print its values and a paired t-test p-value per measure"},
    )
    json: bool = field(
        default=False, metadata={"help": "print one JSON object measure -> value instead of a table"}
    )
    out: str | None = field(default=None, metadata={"help": "write the metrics (and p-values) as JSON here"})
    per_query_out: str | None = field(
        default=None, metadata={"help": "write per-query values as JSON here (EvalResult.load reads it)"}
    )


def _finite(values: dict[str, float]) -> dict[str, float | None]:
    """JSON has no NaN: an undefined p-value becomes null."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}


def run(config: Config) -> dict:
    """Evaluate `config.run` (and the baseline); print, write and return the values."""
    check_writable(config.out, config.per_query_out)
    check_memory("evaluate", run_rows=sum(run_rows(p) for p in (config.run, config.baseline) if p))
    qrels = qrels_dict(read_qrels(config.qrels))
    result = evaluate_run(
        read_run(config.run), qrels, config.metrics, config.relevance_level, where=config.run
    )
    summary: dict = {"metrics": result.aggregate, "num_queries": result.num_queries}
    same_name = bool(config.baseline) and Path(config.run).name == Path(config.baseline).name
    label = config.run if same_name else Path(config.run).name
    rows = {label: result.aggregate}
    p_values = None
    if config.baseline:
        base = evaluate_run(
            read_run(config.baseline), qrels, config.metrics, config.relevance_level, where=config.baseline
        )
        p_values = paired_ttest(result, base)
        rows[config.baseline if same_name else Path(config.baseline).name] = base.aggregate
        summary.update(baseline_metrics=base.aggregate, p_values=_finite(p_values))

    with stage_run("evaluate", to_dict(config)) as tracker:
        tracker.log_metrics(result.aggregate)  # names made MLflow-safe by the tracker
        with atomic_outputs(config.out, config.per_query_out) as (out, per_query_out):
            if config.out:
                doc = {
                    **result.to_dict(per_query=False),
                    "run": config.run,
                    "qrels": config.qrels,
                    **(
                        {"baseline": config.baseline, "baseline_metrics": base.aggregate}
                        if config.baseline
                        else {}
                    ),
                    **({"p_values": _finite(p_values)} if p_values is not None else {}),
                }
                out.write_text(json.dumps(doc, indent=1))
            if config.per_query_out:
                result.save(per_query_out)
        for path in (config.out, config.per_query_out):
            if path:
                tracker.log_artifact(path)

    if config.json:
        print(json.dumps(result.aggregate))
        if p_values is not None:
            logger.info("paired t-test p-values vs %s: %s", config.baseline, json.dumps(_finite(p_values)))
    else:
        level = (
            f", binary measures at grade >= {config.relevance_level}" if config.relevance_level != 1 else ""
        )
        print(f"{result.num_queries} queries{level}")
        print(format_table(rows, p_values))
    return summary
