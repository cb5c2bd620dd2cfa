"""`lead`: one subcommand per stage package, each stage `lead_core/<stage>/stage.py` with its
`Config` dataclass and `run(config)`, and a stage's imports paid only when it is called."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from lead_core import cli

LEAD_CORE = Path(cli.__file__).parent


def test_every_stage_package_is_a_subcommand_and_listed_by_help(capsys):
    packages = {path.parent.name for path in LEAD_CORE.glob("*/stage.py")}
    assert packages <= set(cli.STAGES), f"stage packages missing from lead: {packages - set(cli.STAGES)}"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    listed = capsys.readouterr().out
    for name in cli.STAGES:
        assert f"\n    {name} " in listed, f"lead --help does not list {name}"


@pytest.mark.parametrize("name", list(cli.STAGES))
def test_a_stage_is_config_and_run_of_its_stage_module(name, capsys):
    package = importlib.import_module(f"lead_core.{name}")
    assert dataclasses.is_dataclass(package.Config)
    assert package.Config.__module__ == package.run.__module__ == f"lead_core.{name}.stage"
    with pytest.raises(SystemExit) as exit_:
        cli.main([name, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: lead {name} ")


def test_lead_evaluate_does_not_import_torch():
    code = "import sys; from lead_core.cli import _load_stage; _load_stage('evaluate'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
