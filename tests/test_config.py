"""lead_core.config: the stage flags (HfArgumentParser plus the changes that keep today's flags),
`--config` merged under them, and `--set key=value` through the same coercion."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from lead_core.config import ConfigError, flag_parser, from_flags, parse_assignments


@dataclasses.dataclass
class Config:
    source: str = dataclasses.field(metadata={"help": "where to read"})
    batch_size: int = dataclasses.field(default=8, metadata={"help": "rows per batch"})
    sizes: list[int] = dataclasses.field(default_factory=list)
    reweight: bool = True
    is_query: bool | None = None
    pooling: Literal["cls", "mean"] = "cls"


def parse(argv):
    return from_flags(flag_parser(Config, prog="lead test"), argv)[0]


def test_flags_keep_todays_spellings():
    config = parse(["--source", "s", "--batch", "3", "--sizes", "768,128", "--reweight", "off", "--is-query"])
    assert config == Config(source="s", batch_size=3, sizes=[768, 128], reweight=False, is_query=True)
    assert parse(["--source", "s", "--reweight"]).reweight is True
    assert parse(["--source", "s", "--no-reweight"]).reweight is False  # HfArgumentParser's, not in --help
    with pytest.raises(SystemExit):  # no --foo_bar spelling (it made `--batch` ambiguous)
        parse(["--source", "s", "--batch_size", "3"])
    with pytest.raises(SystemExit):
        parse(["--source", "s", "--pooling", "max"])


def test_help_shows_each_flag_once_with_its_default():
    text = flag_parser(Config, prog="lead test").format_help()
    assert "--batch-size BATCH_SIZE" in text and "--batch_size" not in text and "--no-reweight" not in text
    assert "--sizes A,B,..." in text and "--reweight [BOOL]" in text
    assert (
        "rows per batch (default: 8)" in text and "where to read\n" in text
    )  # a required field shows no default


def test_config_file_under_the_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("source: s\nbatch_size: 16\nsizes: [1, 2]\n")
    assert parse(["--config", str(path)]) == Config(source="s", batch_size=16, sizes=[1, 2])
    assert (
        parse(["--config", str(path), "--batch-size", "8"]).batch_size == 8
    )  # a flag equal to the default wins
    with pytest.raises(ConfigError, match=r"^command line: missing required field\(s\) \['source'\]$"):
        parse([])
    path.write_text("source: s\nbatch_size: 2.5\n")
    with pytest.raises(ConfigError, match=rf"^{path}: line 2: config field 'batch_size' must be an integer"):
        parse(["--config", str(path)])


def test_set_reads_values_like_the_config_file():
    types = {"k": int, "tau": float, "joint": bool, "metrics": list, "options": dict}
    assert parse_assignments(["k=3.0", "tau=5", "joint=off", "metrics=a,b", "options={x: 1}"], types) == {
        "k": 3,
        "tau": 5.0,
        "joint": False,
        "metrics": ["a", "b"],
        "options": {"x": 1},
    }
    assert parse_assignments(["metrics=[nDCG@10]"], types) == {"metrics": ["nDCG@10"]}
    with pytest.raises(
        ConfigError, match=r"^--set 'joint=maybe': config field 'joint': cannot read 'maybe' as bool"
    ):
        parse_assignments(["joint=maybe"], types)
    with pytest.raises(
        ConfigError, match=r"^--set 'options=\[1\]': config field 'options' must be a mapping"
    ):
        parse_assignments(["options=[1]"], types)
    with pytest.raises(ConfigError, match=r"^--set 'kk=1': expected key=value with key one of"):
        parse_assignments(["kk=1"], types)
