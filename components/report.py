"""Component: the paper-layout table over many runs as Markdown, HTML and JSON, and the training plots
(lead_core.report)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output

from components._image import BASE_IMAGE_CPU


@dsl.component(base_image=BASE_IMAGE_CPU, install_kfp_package=False)
def report(
    runs: Input[list[Dataset]],
    logs: Input[list[Dataset]],
    data: Input[Dataset],
    names: list,
    seeds: list,
    fixed_names: dict,
    baseline: str,
    measures: list,
    relevance_level: int,
    title: str,
    table: Output[Markdown],
    html: Output[HTML],
    results: Output[Artifact],
    plots: Output[Artifact],
    zero_shot: Input[Dataset] = None,
    warmup: Input[Dataset] = None,
    teacher: Input[Dataset] = None,
):
    """Evaluate every run, test each against the baseline (paired t-test), write the table and plot
    the training logs.

    Rows: `zero_shot` and `warmup` first, then `runs` (one row per name, its runs the seeds), then
    `teacher`; a fixed row is left out when its run is not given.

    Args:
        runs: run folders holding run.parquet, one per method and seed (e.g. collected from a ParallelFor).
        logs: the training step log (JSONL) of each of `runs`, in the same order.
        data: ingested evaluation split holding qrels.parquet.
        names: method name of each run, in the order of runs; equal names are seeds of one method.
        seeds: the seed of each run, in the order of runs.
        fixed_names: the row names of the fixed runs: keys zero_shot, warmup, teacher.
        baseline: the method the p-values compare against (the paper: RD).
        measures: ir_measures names, e.g. nDCG@10, RR@10, R@100.
        relevance_level: lowest grade that counts as relevant for binary measures.
        title: heading above the table.
        table: output Markdown table (rows: methods; columns: measures and p-values).
        html: output HTML table.
        results: output JSON: every row's measures per seed ("rows") and the table ("table").
        plots: output folder of PNG plots: loss curves and LEAD's layer weights.
        zero_shot: run folder of the untrained student.
        warmup: run folder of the warm student (no distillation).
        teacher: run folder of the warm teacher reranking a first-stage run.
    """
    import json
    import os

    from lead_core.report import Config, run

    if not len(runs) == len(logs) == len(names) == len(seeds):
        raise ValueError(
            f"report: {len(runs)} runs, {len(logs)} logs, {len(names)} names, {len(seeds)} seeds"
        )
    head = [(key, r) for key, r in (("zero_shot", zero_shot), ("warmup", warmup)) if r is not None]
    tail = [("teacher", teacher)] if teacher is not None else []
    rows = [(fixed_names[key], None, r) for key, r in head]
    rows += [(name, seed, r) for name, seed, r in zip(names, seeds, runs)]
    rows += [(fixed_names[key], None, r) for key, r in tail]
    first_seed = [i for i, name in enumerate(names) if names.index(name) == i]  # plotted: one run per row
    os.makedirs(plots.path, exist_ok=True)
    summary = run(
        Config(
            runs=[r.path + "/run.parquet" for _, _, r in rows],
            qrels=data.path + "/qrels.parquet",
            names=[name for name, _, _ in rows],
            baseline=baseline,
            measures=measures,
            relevance_level=relevance_level,
            title=title,
            out_markdown=table.path,
            out_html=html.path,
            logs=[logs[i].path for i in first_seed],
            log_names=[names[i] for i in first_seed],
            out_plots=plots.path,
        )
    )
    by_name: dict = {}
    for name, seed, _ in rows:
        by_name.setdefault(name, []).append(seed)
    doc = {
        "rows": {
            # a fixed row depends on no distillation seed: its one run is under "-"
            name: {
                "seeds": {
                    "-" if s is None else str(int(s)): m for s, m in zip(row_seeds, summary["per_run"][name])
                }
            }
            for name, row_seeds in by_name.items()
        },
        "table": summary["rows"],
        "baseline": summary["baseline"],
        "markdown": summary["markdown"],
    }
    with open(results.path, "w") as f:
        json.dump(doc, f, indent=1)
