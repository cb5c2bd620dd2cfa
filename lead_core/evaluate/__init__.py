"""TREC evaluation of runs and paired t-tests (`lead evaluate`)."""

from lead_core.evaluate.metrics import (
    DEFAULT_METRICS,
    EvalResult,
    evaluate_run,
    format_table,
    paired_ttest,
    qrels_dict,
    resolve_measures,
)
from lead_core.evaluate.stage import Config, run

__all__ = [
    "DEFAULT_METRICS",
    "Config",
    "EvalResult",
    "evaluate_run",
    "format_table",
    "paired_ttest",
    "qrels_dict",
    "resolve_measures",
    "run",
]
