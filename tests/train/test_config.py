"""`lead train`'s config checks: each combination that cannot train is refused, naming the flag."""

from __future__ import annotations

import pytest

from lead_core.config import ConfigError
from lead_core.train import Config

BASE = dict(groups="g.parquet", corpus="c.parquet", queries="q.parquet", out="out", model="m")


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(tau_d=0.0), "--tau-d and --tau-l must be > 0"),
        (dict(tau_l=-1.0), "--tau-d and --tau-l must be > 0"),
        (dict(lr=0.0), "learning rates must be > 0"),
        (dict(teacher_lr=0.0, teacher="t", method="lead"), "learning rates must be > 0"),
        (dict(resume=True), "--resume needs --checkpoint-dir or --checkpoint-every"),
        (dict(method="lead"), "--method lead needs --teacher"),
        (dict(teacher="t"), "--method none trains without a teacher"),
        (dict(warmup_ratio=1.5), "--warmup-ratio must be in"),
        (dict(max_steps=0, epochs=0), "set --max-steps or --epochs"),
    ],
)
def test_invalid_combinations_are_refused(values, message):
    with pytest.raises(ConfigError, match=message):
        Config(**BASE, **values).validate()


@pytest.mark.parametrize(
    "values",
    [
        dict(resume=True, checkpoint_dir="ckpt"),
        dict(resume=True, checkpoint_every=5),
        dict(method="lead", teacher="t", tau_d=0.5, tau_l=0.05, teacher_lr=1e-5),
        dict(max_steps=0, epochs=1, warmup_ratio=1.0),
    ],
)
def test_valid_combinations_pass(values):
    Config(**BASE, **values).validate()
