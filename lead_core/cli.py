"""`lead <stage> ...`: every stage of the pipeline from a shell or a container.

Each stage module exports a `Config` dataclass and `run(config) -> dict`; its flags are built from
the dataclass (see lead_core.config). Modules are imported only when their stage is called, so
`lead evaluate` does not pay for importing torch.

A user mistake (a `lead_core.errors.UserError`: bad data or config, a missing file or package,
an unreachable URI, an unwritable output) is printed as one line, ``lead <stage>: error: ...``,
with exit status 1 and no traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from lead_core import __version__
from lead_core.config import flag_parser, from_flags
from lead_core.errors import UserError

# stage name -> one-line description; the stage is the module `lead_core.<name>` (Config, run).
STAGES: dict[str, str] = {
    "ingest": "read an MS MARCO or BEIR dataset into corpus/queries/qrels Parquet",
    "identity": "the identity (content digest) of a dataset or backbone source",
    "backbone": "materialise a backbone source (folder, hub id, package, tiny, truncated) as a folder",
    "bm25": "BM25 top-k run and BM25 or random negatives as training groups",
    "train": "train a model: phase-1 DE, teacher/student warm-up, or distillation",
    "encode": "encode a corpus or queries with a dual encoder into embeddings",
    "index": "build a faiss inner-product index over embeddings",
    "search": "exact top-k search of query embeddings against an index",
    "mine": "mine hard negatives from a run into training groups",
    "rerank": "re-score a run's top-k with a ColBERT or cross-encoder model",
    "evaluate": "TREC measures of a run against qrels; paired t-test vs a baseline",
    "report": "a table and plots over the metrics of many runs",
    "export": "a saved model as a sentence-transformers or plain transformers folder",
}


# User errors: lead_core's own, and the operating system's errors about a path the user gave
# (their message names the path).
USER_ERRORS = (
    UserError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


# Stages whose run() is data parallel over processes: `--nproc N` starts N of them, one per GPU
# (lead_core.distributed.launch, the path the pipeline's GPU components take).
MULTI_PROCESS_STAGES = frozenset({"train", "encode", "search", "rerank"})


def _load_stage(name: str):
    module = importlib.import_module(f"lead_core.{name}")
    return module.Config, module.run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lead", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lead_core {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE")
    for name, description in STAGES.items():
        sub.add_parser(name, help=description, description=description, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse the stage name first; build that stage's flags only (imports only its module).
    head, rest = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if head.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if head.stage is None:
        parser.print_help()
        return 2
    config_cls, run = _load_stage(head.stage)
    stage_parser = flag_parser(config_cls, prog=f"lead {head.stage}", description=STAGES[head.stage])
    if head.stage in MULTI_PROCESS_STAGES:
        stage_parser.add_argument(
            "--nproc", type=int, default=1, help="processes, one per GPU (gloo on CPU); 1: this process"
        )
    try:
        config, args = from_flags(stage_parser, rest)
        if getattr(args, "nproc", 1) > 1:
            from lead_core.distributed import RankFailedError, launch

            try:
                result = launch(run, config, args.nproc)
            except RankFailedError as err:  # the rank printed its traceback; name its error once more
                print(f"lead {head.stage}: error: {err}", file=sys.stderr)
                return 1
        else:
            result = run(config)
    except USER_ERRORS as err:
        message = " ".join(str(err).split())  # one line, whatever the message
        print(f"lead {head.stage}: error: {message}", file=sys.stderr)
        return 1
    if result and logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.debug("result: %s", json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
