"""`lead export`: a saved lead model -> a folder that standard libraries load without lead_core.

Formats:
  - `sentence-transformers` (dual encoder): `SentenceTransformer(out)` gives the embeddings of
    `lead encode` – Transformer (max_seq_length = passage_max_length; `encode_query` uses
    query_max_length) -> Pooling (cls or mean, as trained) -> one Dense (identity activation) per
    appended linear layer; no normalisation (LEAD scores raw dot products), similarity "dot".
  - `sentence-transformers` (cross-encoder): `CrossEncoder(out)` – Transformer -> Pooling(cls) ->
    Dense(H -> 1, identity) named "scores", activation identity: `predict` returns the raw scores of
    `lead rerank`. (transformers' AutoModelForSequenceClassification cannot hold it exactly: BERT's
    classification head runs the [CLS] state through a pooler (dense + tanh) that this head skips.)
  - `hf` (every architecture): the backbone as a plain transformers folder (`AutoModel`), its
    tokenizer, the weights on top of it (appended linear layers, the CE head) in
    `lead_head.safetensors`, and `lead_export.json` saying how to pool and score.
  ColBERT has no sentence-transformers form here (late interaction scores token vectors, not one
  embedding): use `hf`; lead_export.json spells out the MaxSim recipe.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lead_core import __version__
from lead_core.artifacts import atomic_path
from lead_core.config import ConfigError, to_dict

log = logging.getLogger(__name__)

FORMATS = ("sentence-transformers", "hf")
NOTE_FILE = "lead_export.json"
HEAD_FILE = "lead_head.safetensors"

_USAGE = {
    (
        "de",
        "sentence-transformers",
    ): "SentenceTransformer(path).encode(texts) (passages), .encode_query(queries)",
    ("ce", "sentence-transformers"): "CrossEncoder(path).predict([(query, passage), ...]) (raw scores)",
    ("de", "hf"): "AutoModel + AutoTokenizer; pool the last hidden state ({pooling}), then apply the "
    "linear layers of lead_head.safetensors (appended.<i>.weight/bias) in order; score = dot product",
    ("cb", "hf"): "AutoModel + AutoTokenizer; queries padded with the mask token to query_max_length "
    "(attended) when query_augmentation; token vectors of the last hidden state, through the linear "
    "layers of lead_head.safetensors if any, L2-normalised; score = sum over query tokens of the max "
    "dot product over the passage's real tokens (MaxSim)",
    ("ce", "hf"): "AutoModel + AutoTokenizer on (query, passage) pairs; score = head.weight · "
    "last_hidden_state[:, 0] + head.bias (lead_head.safetensors)",
}


@dataclass
class Config:
    model: str = field(metadata={"help": "saved lead model directory (lead_model.json + weights)"})
    out: str = field(metadata={"help": "output folder"})
    format: Literal["sentence-transformers", "hf"] = field(
        default="sentence-transformers",
        metadata={"help": "sentence-transformers (dual encoder, cross-encoder) or hf (any model)"},
    )
    # With tracking on: the exported model as an MLflow model of this stage's run, registered.
    registered_model_name: str | None = field(
        default=None, metadata={"help": "register the logged model under this name (alias 'candidate')"}
    )
    metrics: str | None = field(
        default=None, metadata={"help": "evaluation JSON of this model (lead evaluate --out): logged with it"}
    )
    teacher: str | None = field(
        default=None,
        metadata={"help": "the teacher's saved model directory: its type and backbone are recorded"},
    )
    teacher_source: str | None = field(
        default=None, metadata={"help": "the teacher's backbone source as the pipeline named it, recorded"}
    )
    dataset: str | None = field(default=None, metadata={"help": "identity of the training data, recorded"})


def _note(model, fmt: str) -> dict[str, Any]:
    """What lead_export.json records: where the folder came from and how to score with it."""
    config = model.config
    return {
        "format": fmt,
        "architecture": config.architecture,
        "pooling": config.pooling if config.architecture == "de" else None,
        "query_max_length": config.query_max_length,
        "passage_max_length": config.passage_max_length,
        "query_augmentation": config.query_augmentation if config.architecture == "cb" else None,
        "appended_linear": list(config.appended_linear),
        "normalize": config.architecture == "cb",
        "source_backbone": config.backbone,
        "lead_core_version": __version__,
        "usage": _USAGE[(config.architecture, fmt)].format(pooling=config.pooling),
    }


def _write_hf(model, folder: Path) -> None:
    """The backbone (config.json, model.safetensors), tokenizer and the weights on top of it."""
    from safetensors.torch import save_file

    folder.mkdir()
    model.backbone.save_pretrained(folder, safe_serialization=True)
    model.tokenizer.save_pretrained(folder)
    extra = {
        k: v.detach().cpu().contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith("backbone.")
    }
    if extra:
        save_file(extra, folder / HEAD_FILE, {"format": "pt"})


def _pooling(model, mode: str):
    from sentence_transformers.sentence_transformer.modules import Pooling

    return Pooling(model.hidden_size, pooling_mode=mode)


def _transformer(model, backbone_dir: Path, max_length: int, **lengths):
    from sentence_transformers.sentence_transformer.modules import Transformer

    return Transformer(str(backbone_dir), max_seq_length=max_length, **lengths)


def _dense(linear, **kwargs):
    import torch
    from sentence_transformers.sentence_transformer.modules import Dense

    return Dense(
        linear.in_features,
        linear.out_features,
        bias=True,
        activation_function=torch.nn.Identity(),
        init_weight=linear.weight.detach().cpu().clone(),
        init_bias=linear.bias.detach().cpu().clone(),
        **kwargs,
    )


def _write_sentence_transformers(model, folder: Path) -> None:
    config = model.config
    if config.architecture == "cb":
        raise ConfigError(
            "a ColBERT model has no sentence-transformers form (late interaction scores token "
            "vectors, not one embedding per text): export it with --format hf"
        )
    with tempfile.TemporaryDirectory(prefix="lead-export-") as scratch:
        backbone_dir = Path(scratch) / "backbone"
        backbone_dir.mkdir()
        model.backbone.save_pretrained(backbone_dir, safe_serialization=True)
        model.tokenizer.save_pretrained(backbone_dir)
        if config.architecture == "de":
            from sentence_transformers import SentenceTransformer

            modules = [
                _transformer(
                    model,
                    backbone_dir,
                    config.passage_max_length,
                    query_length=config.query_max_length,
                    document_length=config.passage_max_length,
                ),
                _pooling(model, config.pooling),
                *(_dense(linear) for linear in model.appended),
            ]
            exported = SentenceTransformer(modules=modules, similarity_fn_name="dot", device="cpu")
        else:
            import torch
            from sentence_transformers import CrossEncoder

            modules = [
                _transformer(model, backbone_dir, config.query_max_length + config.passage_max_length),
                _pooling(model, "cls"),
                _dense(model.head, module_output_name="scores"),
            ]
            exported = CrossEncoder(modules=modules, activation_fn=torch.nn.Identity(), device="cpu")
        exported.save(str(folder))


def export_model(model_dir: str | Path, out: str | Path, fmt: str = "sentence-transformers") -> Path:
    """Write the saved lead model `model_dir` to the folder `out` in format `fmt` (see module doc)."""
    from lead_core.models import load_model

    if fmt not in FORMATS:
        raise ConfigError(f"export format {fmt!r}: expected one of {', '.join(FORMATS)}")
    model = load_model(model_dir).to("cpu")
    out = Path(out)
    with atomic_path(out) as tmp:
        if fmt == "hf":
            _write_hf(model, tmp)
        else:
            _write_sentence_transformers(model, tmp)
        note = {**_note(model, fmt), "source": str(model_dir)}
        (tmp / NOTE_FILE).write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")
    log.info("exported %s (%s) to %s as %s", model_dir, model.config.architecture, out, fmt)
    return out


def provenance(config: Config) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, tags) that describe an exported model: its evaluation, teacher and training data."""
    from lead_core.models.loading import read_model_config

    metrics: dict[str, float] = {}
    if config.metrics:
        path = Path(config.metrics)
        try:
            metrics = {
                k: float(v) for k, v in json.loads(path.read_text(encoding="utf-8"))["metrics"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise ConfigError(f"{path}: not an evaluation JSON with a 'metrics' object ({err})") from None
    student = read_model_config(config.model)
    tags = {"student.architecture": student.architecture, "student.backbone": student.backbone}
    if config.teacher:
        teacher = read_model_config(config.teacher)
        tags.update({"teacher.architecture": teacher.architecture, "teacher.backbone": teacher.backbone})
    if config.teacher_source:
        tags["teacher.source"] = config.teacher_source
    if config.dataset:
        tags["dataset"] = config.dataset
    return metrics, tags


def run(config: Config) -> dict[str, Any]:
    from lead_core.tracking import stage_run

    metrics, tags = provenance(config)  # bad inputs fail before any work
    with stage_run("export", to_dict(config)) as tracker:
        path = export_model(config.model, config.out, config.format)
        for key, value in tags.items():
            tracker.set_tag(key, value)
        model_uri = None
        if config.format == "sentence-transformers":
            model_uri = tracker.log_model(
                path,
                name="student",
                registered_model_name=config.registered_model_name,
                metrics=metrics,
                tags=tags,
            )
    return {"out": str(path), "format": config.format, "model_uri": model_uri}
