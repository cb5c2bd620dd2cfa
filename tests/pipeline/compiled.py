"""Reading a compiled pipeline spec: its tasks that run a container, sub-DAGs walked into."""

from __future__ import annotations


def executor_tasks(spec: dict) -> dict[str, dict]:
    """task name -> task of every container task of `spec`, those inside conditions
    (dsl.If/Else) and loops (dsl.ParallelFor) included; the sub-DAG tasks themselves are left out."""
    components = spec["components"]
    out: dict[str, dict] = {}
    pending = [spec["root"]["dag"]]
    while pending:
        for name, task in pending.pop()["tasks"].items():
            component = components[task["componentRef"]["name"]]
            if "dag" in component:
                pending.append(component["dag"])
            else:
                out[name] = task
    return out
