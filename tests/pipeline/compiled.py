"""Reading a compiled pipeline spec: its tasks that run a container, sub-DAGs walked into."""

from __future__ import annotations


def executor_tasks(spec: dict) -> dict[str, dict]:
    """task name -> task of every task of `spec` that runs a container, those inside conditions
    (dsl.If/Else) and loops (dsl.ParallelFor) included; sub-DAGs and importers are left out."""
    components = spec["components"]
    executors = spec["deploymentSpec"]["executors"]
    out: dict[str, dict] = {}
    pending = [spec["root"]["dag"]]
    while pending:
        for name, task in pending.pop()["tasks"].items():
            component = components[task["componentRef"]["name"]]
            if "dag" in component:
                pending.append(component["dag"])
            elif "container" in executors[component["executorLabel"]]:
                out[name] = task
    return out
