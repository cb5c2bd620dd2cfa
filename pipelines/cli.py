"""The command-line parts both pipelines share: profile options, local runs, compiling or submitting.

`python pipelines/<pipeline>.py --compile FILE` writes the spec with a profile's values as the
parameter defaults; `--submit --endpoint URL` starts a run through kfp.Client. (Without a profile,
`kfp dsl compile --py pipelines/<pipeline>.py --output FILE` compiles the module's pipeline with
its built-in defaults.)
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lead_core.profiles import DEFAULT_MODEL_DIR, PROFILES


def add_compile_submit(mode: argparse._MutuallyExclusiveGroup) -> None:
    """--compile FILE and --submit, in the parser's group of modes."""
    mode.add_argument("--compile", metavar="FILE", help="write the pipeline spec (YAML) for `kfp run create`")
    mode.add_argument("--submit", action="store_true", help="submit a run to a KFP endpoint (kfp.Client)")


def add_profile(parser: argparse.ArgumentParser, source: str = "lead_core.profiles") -> None:
    """--profile (the parameter defaults, from `source`) and --model-dir (where the gpu profile's
    models are)."""
    parser.add_argument("--profile", choices=PROFILES, default="cpu", help=f"parameter defaults ({source})")
    parser.add_argument(
        "--model-dir", default=DEFAULT_MODEL_DIR, help="where the gpu profile finds all-mpnet-base-v2"
    )


def add_cluster(parser: argparse.ArgumentParser) -> None:
    """--endpoint, --experiment (submit) and --mlflow-uri (compile and submit)."""
    parser.add_argument("--endpoint", help="submit: KFP API endpoint URL")
    parser.add_argument("--experiment", default="lead", help="submit: KFP experiment name")
    parser.add_argument("--mlflow-uri", default="", help="compile/submit: MLFLOW_TRACKING_URI of every task")


def dataset_argument(text: str) -> str:
    """--dataset's value as a pipeline parameter: an existing local path made absolute (tasks run
    in folders of their own), anything else (a URI) as given."""
    return str(Path(text).resolve()) if Path(text).exists() else text


def init_local(pipeline_root: Path, cache_root: Path, runner: Any = None) -> None:
    """kfp.local for the next pipeline call: caching on (entries under `cache_root`), artifacts
    under `pipeline_root`, a failed task raises. `runner`: by default each task in a subprocess
    of this Python (nothing pip-installed: the installed project is what tasks import). kfp's
    workspace goes beside `pipeline_root` (kfp.local would otherwise make a new one in /tmp)."""
    from kfp import local

    workspace = pipeline_root.parent / "kfp-workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=runner or local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        workspace_root=str(workspace),
        enable_caching=True,
        cache_root=str(cache_root),
        raise_on_error=True,
    )


@contextlib.contextmanager
def tasks_tmpdir(folder: Path) -> Iterator[None]:
    """TMPDIR is `folder` for the tasks (subprocesses) started in the block, as it was after it.
    kfp's command for Python components writes each task's program to `mktemp -d` and never
    removes it: in the workdir, not in /tmp."""
    folder.mkdir(parents=True, exist_ok=True)
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = before


def compile_or_submit(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    pipeline: Any,
    arguments: dict[str, Any],
    run_name: str,
    what: str,
) -> int:
    """--compile: write `pipeline`'s spec with `arguments` as its parameter defaults; --submit: start
    a run of it with `arguments` at --endpoint, in --experiment, named `run_name`. `what` says in
    the compile message what was compiled (e.g. the profile)."""
    if args.compile:
        from kfp import compiler

        compiler.Compiler().compile(pipeline, args.compile, pipeline_parameters=arguments)
        print(f"wrote {args.compile} ({what})")
        return 0
    if not args.endpoint:
        parser.error("--submit needs --endpoint URL")
    from kfp import Client

    run = Client(host=args.endpoint).create_run_from_pipeline_func(
        pipeline, arguments=arguments, experiment_name=args.experiment, run_name=run_name
    )
    print(f"submitted run {run.run_id} to {args.endpoint}")
    return 0
