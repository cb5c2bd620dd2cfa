"""Shared fixtures: the real datasets in ../shared/datasets and tiny random backbones."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def datasets_root() -> Path:
    root = Path(os.environ.get("LEAD_DATASETS", REPO.parent / "shared" / "datasets"))
    if not (root / "scifact").exists():
        raise RuntimeError(
            f"real datasets not found at {root}; set LEAD_DATASETS to the folder holding scifact/ "
            "and msmarco-dl19-dl20-pools/"
        )
    return root


@pytest.fixture(scope="session", autouse=True)
def _children_tmpdir(tmp_path_factory):
    """The temporary folder of the tests' subprocesses (TMPDIR) and of this process (`tempfile`)
    inside the session's: kfp's command for Python components (`mktemp -d` per task) and torch's
    elastic launcher leave folders behind, which pytest then removes with the session's folder
    instead of piling up in /tmp."""
    scratch = str(tmp_path_factory.mktemp("children-tmp"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", scratch)
        patch.setattr(tempfile, "tempdir", scratch)
        yield


@pytest.fixture(scope="session")
def datasets() -> Path:
    return datasets_root()


@pytest.fixture(scope="session")
def scifact_dir(datasets) -> Path:
    return datasets / "scifact"


@pytest.fixture(scope="session")
def dl_pools_dir(datasets) -> Path:
    return datasets / "msmarco-dl19-dl20-pools"


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 4-layer, 32-d random BERT backbone folder with a real (MiniLM) WordPiece tokenizer."""
    from lead_core.models.tiny import build_tiny_backbone

    return build_tiny_backbone(
        tmp_path_factory.mktemp("tiny-bert"), family="bert", num_layers=4, hidden=32, seed=0
    )


@pytest.fixture(scope="session")
def tiny_mpnet(tmp_path_factory) -> Path:
    """A 6-layer, 48-d random MPNet backbone folder with an MPNet-style tokenizer."""
    from lead_core.models.tiny import build_tiny_backbone

    return build_tiny_backbone(
        tmp_path_factory.mktemp("tiny-mpnet"), family="mpnet", num_layers=6, hidden=48, seed=0
    )
