"""MLflow tracking, optional: with no tracking URI every call is a no-op that costs nothing.

Usage in a stage:

    with stage_run("train", to_dict(config)) as tracker:
        tracker.log_metrics({"loss/total": 1.2}, step=10)
        tracker.log_artifact(path)

and around a whole local pipeline (its stages, in child processes, nest under it):

    with pipeline_run("lead_msmarco", {"profile": "cpu"}) as parent:
        ...  # every stage_run started meanwhile (here or in a subprocess) is its child

- The tracking URI comes from MLFLOW_TRACKING_URI; local runs point it at
  `local_default_uri(workdir)` (an sqlite file). Without it nothing here imports mlflow.
- The experiment comes from MLFLOW_EXPERIMENT_NAME (default "lead"); a stage nested under a parent
  run (LEAD_PARENT_RUN_ID) goes into the parent's experiment, where the MLflow UI can nest it.
- Tracking never stops the work it records: if the server cannot be reached (at the start or
  mid-run) the tracker prints one warning and turns itself into a no-op. mlflow's HTTP retries
  (7 retries with exponential backoff by default, minutes against a dead server) are shortened
  while a run is open unless the user set them.
- A stage that raises marks its run FAILED (KeyboardInterrupt: KILLED), then re-raises.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lead_core import __version__

logger = logging.getLogger(__name__)

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
PARENT_RUN_ENV = "LEAD_PARENT_RUN_ID"
DEFAULT_EXPERIMENT = "lead"
# MLflow 3 opens an experiment in the view of its kind: this one is model training (the runs table),
# not GenAI (traces). The tag and value the MLflow UI reads (mlflow/server/js: ExperimentKind).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# What a registered model version's newest candidate is called (MlflowClient.set_registered_model_alias).
CANDIDATE_ALIAS = "candidate"

# mlflow's limits (mlflow.utils.validation), copied so that the no-op path never imports mlflow.
MAX_PARAM_VALUE_LENGTH = 6000
MAX_KEY_LENGTH = 250
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000

# While a run is open: a dead server costs ~2 s per call (2 retries, 1 s backoff) instead of
# minutes; a hung one at most 3 x 30 s once, after which the tracker is disabled.
FAST_FAIL_HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}

_INVALID_NAME_CHARS = re.compile(r"[^0-9A-Za-z_\-. /]")


def tracking_uri() -> str | None:
    """The MLflow tracking URI from the environment, or None (tracking off)."""
    return os.environ.get(TRACKING_URI_ENV) or None


def local_default_uri(workdir: str | Path) -> str:
    """The sqlite store for local runs: "sqlite:///<absolute workdir>/mlflow.db"."""
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def sanitize_name(name: Any) -> str:
    """A metric or param name MLflow accepts: alphanumerics, `_ - . space /`, no empty, `.` or
    `..` path segments, at most 250 characters. Other characters become "_"."""
    cleaned = _INVALID_NAME_CHARS.sub("_", str(name))
    parts = [part for part in cleaned.split("/") if part not in ("", ".", "..")]
    return ("/".join(parts) or "_")[:MAX_KEY_LENGTH]


def _param_value(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
        text = json.dumps(items, default=str)
    else:
        text = str(value)
    if len(text) > MAX_PARAM_VALUE_LENGTH:
        marker = f"...[{len(text)} chars]"
        text = text[: MAX_PARAM_VALUE_LENGTH - len(marker)] + marker
    return text


def flatten_params(config: Mapping[str, Any] | Any, prefix: str = "") -> dict[str, str]:
    """A config (mapping or dataclass, nested) as MLflow params: keys joined by "." ("lead.k"),
    values as strings cut to MLflow's 6000-character limit, lists as JSON."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, name))
        else:
            flat[sanitize_name(name)] = _param_value(value)
    return flat


_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_location(value: Any) -> bool:
    """A file path or URI (absolute path, ./relative path, scheme://...): where data is, not what a
    stage does. Such values go to tags, so that comparing runs shows what differs in their setup."""
    if not isinstance(value, str):
        return False
    return os.path.isabs(value) or value.startswith(("./", "../")) or bool(_URI_SCHEME.match(value))


def split_locations(config: Mapping[str, Any] | Any) -> tuple[dict[str, str], dict[str, str]]:
    """(params, location tags) of a flattened config: locations as tags named "path.<key>"."""
    params, locations = {}, {}
    for key, value in flatten_params(config).items():
        if is_location(value):
            locations[sanitize_name(f"path.{key}")] = value
        else:
            params[key] = value
    return params, locations


def describe_run(profile: str, overrides: Mapping[str, Any]) -> str:
    """A parent run's name: the profile and what the run overrides, e.g. "cpu tau_l=5 k=3".

    Locations (a dataset folder or URI) are shortened to their last path segment."""
    parts = [profile]
    for key, value in overrides.items():
        text = _param_value(value)
        if is_location(text):
            text = text.rstrip("/").rsplit("/", 1)[-1] or text
        parts.append(f"{key}={text}")
    return " ".join(parts)[:MAX_KEY_LENGTH]


def runs_page(experiment_id: str, ui_url: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI's runs table of an experiment. MLflow 3's UI opens experiments in the view its
    GenAI / Model training switch (kept per browser, GenAI by default) says, whatever the experiment's
    kind tag: `workflowType=machine_learning` opens the runs table."""
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def _redact(uri: str) -> str:
    """The URI without a password, fit for a log line."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _one_line(err: BaseException, limit: int = 500) -> str:
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _warn_unavailable(uri: str, err: BaseException) -> None:
    reason = _one_line(err)
    password = urlsplit(uri).password
    if password:  # mlflow's errors quote the request URL, credentials included
        reason = reason.replace(f":{password}@", ":***@")
    logger.warning("MLflow tracking unavailable at %s: %s; continuing without tracking", _redact(uri), reason)


class StageTracker:
    """Logs to one MLflow run, or does nothing when `enabled` is False (this class: always)."""

    enabled = False
    run_id: str | None = None
    experiment_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        pass

    def flush(self) -> None:
        pass

    def set_tag(self, key: str, value: Any) -> None:
        pass

    def log_model(self, folder: str | Path, **kwargs: Any) -> str | None:
        return None


class MlflowTracker(StageTracker):
    """One open MLflow run. Metrics are buffered and sent in batches (log_batch) at most every
    `flush_interval_s` seconds, before an artifact upload, and when the run ends.

    Every call catches its own errors: the first one prints a single warning and disables the
    tracker for the rest of the run.
    """

    def __init__(self, client: Any, run_id: str, uri: str, flush_interval_s: float = 5.0) -> None:
        self.enabled = True
        self.run_id = run_id
        self._client = client
        self._uri = uri
        self._flush_interval_s = flush_interval_s
        self._pending: list[Any] = []  # mlflow.entities.Metric
        self._last_flush = time.monotonic()
        self._params: dict[str, str] = {}

    def _disable(self, err: BaseException) -> None:
        self.enabled = False
        self._pending.clear()
        _warn_unavailable(self._uri, err)

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        flat = flatten_params(params)
        new = {}
        for key, value in flat.items():
            if key not in self._params:
                new[key] = value
            elif self._params[key] != value:
                # MLflow params are immutable: a changed value would fail the whole batch.
                logger.warning(
                    "MLflow param %r already logged as %r; not logging %r", key, self._params[key], value
                )
        if not new:
            return
        from mlflow.entities import Param

        try:
            items = list(new.items())
            for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
                chunk = [Param(k, v) for k, v in items[start : start + MAX_PARAMS_PER_BATCH]]
                self._client.log_batch(self.run_id, params=chunk)
            self._params.update(new)
        except Exception as err:
            self._disable(err)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Queue metric values (names sanitised, values as float; non-numbers skipped)."""
        if not self.enabled:
            return
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        for name, value in metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                logger.warning("MLflow metric %r is not a number (%r); skipped", name, value)
                continue
            self._pending.append(Metric(sanitize_name(name), number, timestamp, int(step or 0)))
        if (
            len(self._pending) >= MAX_METRICS_PER_BATCH
            or time.monotonic() - self._last_flush >= self._flush_interval_s
        ):
            self.flush()

    def flush(self) -> None:
        """Send the buffered metrics now."""
        self._last_flush = time.monotonic()
        if not self.enabled or not self._pending:
            return
        pending, self._pending = self._pending, []
        try:
            for start in range(0, len(pending), MAX_METRICS_PER_BATCH):
                self._client.log_batch(self.run_id, metrics=pending[start : start + MAX_METRICS_PER_BATCH])
        except Exception as err:
            self._disable(err)

    def _upload(self, local_path: str | Path, artifact_path: str | None, method: str) -> None:
        if not self.enabled:
            return
        if not Path(local_path).exists():
            logger.warning("MLflow artifact %s does not exist; not logged", local_path)
            return
        self.flush()
        if not self.enabled:
            return
        try:
            getattr(self._client, method)(self.run_id, str(local_path), artifact_path)
        except Exception as err:
            self._disable(err)

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file (or a directory, as one folder) under `artifact_path`."""
        self._upload(local_path, artifact_path, "log_artifact")

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        """Upload the contents of a directory under `artifact_path`."""
        self._upload(local_dir, artifact_path, "log_artifacts")

    def set_tag(self, key: str, value: Any) -> None:
        if not self.enabled:
            return
        try:
            self._client.set_tag(self.run_id, sanitize_name(key), _param_value(value))
        except Exception as err:
            self._disable(err)

    def log_model(
        self,
        folder: str | Path,
        *,
        name: str = "model",
        registered_model_name: str | None = None,
        alias: str | None = CANDIDATE_ALIAS,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Log a sentence-transformers folder as an MLflow model of this run (MLflow 3: a logged
        model, with `metrics` linked to it), register it as `registered_model_name` when given and
        point `alias` at the new version. Returns the model URI, or None when not logged.

        The folder must load with `SentenceTransformer(folder)` (lead export's format for dual
        encoders); anything else is logged as plain artifacts under `name`."""
        if not self.enabled:
            return None
        self.flush()
        if not self.enabled:
            return None
        tags = {sanitize_name(k): _param_value(v) for k, v in (tags or {}).items()}
        try:
            import mlflow

            mlflow.set_tracking_uri(self._uri)
            try:
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(str(folder), device="cpu")
            except Exception as err:  # not a sentence-transformers folder, or the package is missing
                logger.warning("%s is not logged as an MLflow model (%s); logging its files", folder, err)
                self._client.log_artifacts(self.run_id, str(folder), name)
                return None
            with mlflow.start_run(run_id=self.run_id, nested=True):
                info = mlflow.sentence_transformers.log_model(
                    model,
                    name=name,
                    registered_model_name=registered_model_name,
                    pip_requirements=_model_requirements(),
                    params={k: _param_value(v) for k, v in (params or {}).items()} or None,
                    tags=tags or None,
                    await_registration_for=60,
                )
                if metrics:
                    values = {sanitize_name(k): float(v) for k, v in metrics.items()}
                    mlflow.log_metrics(values, model_id=info.model_id)
            version = getattr(info, "registered_model_version", None)
            if registered_model_name and version is not None:
                for key, value in tags.items():
                    self._client.set_model_version_tag(registered_model_name, str(version), key, value)
                if alias:
                    self._client.set_registered_model_alias(registered_model_name, alias, str(version))
            return info.model_uri
        except Exception as err:
            self._disable(err)
            return None

    def close(self, status: str = "FINISHED") -> None:
        """Flush and mark the run FINISHED, FAILED or KILLED."""
        self.flush()
        if not self.enabled:
            return
        try:
            self._client.set_terminated(self.run_id, status=status)
        except Exception as err:
            self._disable(err)
        self.enabled = False


def _model_requirements() -> list[str]:
    """What serving the logged model needs, pinned to what logged it (mlflow would otherwise infer
    them by loading the model in a subprocess: slow)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("sentence-transformers", "transformers", "torch"):
        try:
            pins.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


@contextmanager
def _fast_fail_http() -> Iterator[None]:
    """Short mlflow HTTP retries while a run is open, unless the user chose their own."""
    added = [name for name in FAST_FAIL_HTTP_ENV if name not in os.environ]
    for name in added:
        os.environ[name] = FAST_FAIL_HTTP_ENV[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _experiment_id(client: Any, uri: str) -> str:
    """The id of MLFLOW_EXPERIMENT_NAME (default "lead"), created if missing. An sqlite store keeps
    its artifacts in "mlartifacts" next to the database, whatever the working directory."""
    from mlflow.exceptions import MlflowException

    name = os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if EXPERIMENT_KIND_TAG not in experiment.tags:  # made by an older version: say what it is
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return experiment.experiment_id
    artifact_location = None
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///")).resolve()
        artifact_location = (database.parent / "mlartifacts").as_uri()
    try:
        return client.create_experiment(
            name, artifact_location=artifact_location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
    except MlflowException:
        experiment = client.get_experiment_by_name(name)  # another process created it first
        if experiment is None:
            raise
        return experiment.experiment_id


def _start_run(uri: str, run_name: str, tags: dict[str, str], flush_interval_s: float) -> StageTracker:
    """Open an MLflow run (nested under LEAD_PARENT_RUN_ID when set), or return a no-op tracker
    with a warning when mlflow is missing or the server cannot be reached."""
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError as err:
        logger.warning(
            "%s is set but mlflow is not installed (pip install 'lead-core[tracking]'): %s; "
            "continuing without tracking",
            TRACKING_URI_ENV,
            err,
        )
        return StageTracker()
    try:
        client = MlflowClient(tracking_uri=uri)
        parent_id = os.environ.get(PARENT_RUN_ENV) or None
        experiment_id = None
        if parent_id:
            try:
                experiment_id = client.get_run(parent_id).info.experiment_id
                tags = {**tags, "mlflow.parentRunId": parent_id}
            except MlflowException as err:
                if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                logger.warning(
                    "%s=%s names no run at %s; logging without a parent",
                    PARENT_RUN_ENV,
                    parent_id,
                    _redact(uri),
                )
        if experiment_id is None:
            experiment_id = _experiment_id(client, uri)
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        tracker = MlflowTracker(client, run.info.run_id, uri, flush_interval_s)
        tracker.experiment_id = experiment_id
        return tracker
    except Exception as err:
        _warn_unavailable(uri, err)
        return StageTracker()


@contextmanager
def _run_until_exit(tracker: StageTracker) -> Iterator[StageTracker]:
    """Yield the tracker; end its run FINISHED, FAILED (with the error as a tag) or KILLED."""
    if not isinstance(tracker, MlflowTracker):
        yield tracker
        return
    try:
        yield tracker
    except KeyboardInterrupt:
        tracker.close("KILLED")
        raise
    except SystemExit as exc:
        tracker.close("FINISHED" if exc.code in (None, 0) else "FAILED")
        raise
    except BaseException as exc:
        tracker.set_tag("lead.error", _one_line(exc, MAX_PARAM_VALUE_LENGTH))
        tracker.close("FAILED")
        raise
    tracker.close("FINISHED")


def _base_tags() -> dict[str, str]:
    return {"lead_core.version": __version__}


@contextmanager
def stage_run(
    stage: str, config: Mapping[str, Any] | Any | None = None, *, flush_interval_s: float = 5.0
) -> Iterator[StageTracker]:
    """A tracker for one stage: an MLflow run tagged `stage` and `lead_core.version`, with the
    flattened config as params, nested under LEAD_PARENT_RUN_ID when set. The run is named
    LEAD_STAGE_NAME when set (the pipeline step, e.g. "teacher-warmup"), else after the stage.
    Without MLFLOW_TRACKING_URI: a no-op tracker and no mlflow import."""
    uri = tracking_uri()
    if uri is None:
        yield StageTracker()
        return
    run_name = os.environ.get("LEAD_STAGE_NAME") or stage
    with _fast_fail_http():
        params, locations = split_locations(config) if config else ({}, {})
        tags = {**_base_tags(), "stage": stage, **locations}
        tracker = _start_run(uri, run_name, tags, flush_interval_s)
        with _run_until_exit(tracker):
            if params:
                tracker.log_params(params)
            yield tracker


@contextmanager
def pipeline_run(
    name: str,
    params: Mapping[str, Any] | Any | None = None,
    *,
    run_name: str | None = None,
    flush_interval_s: float = 5.0,
) -> Iterator[StageTracker]:
    """The parent run of one pipeline run, named `run_name` (see `describe_run`; default `name`)
    and tagged `pipeline=name`. While open, LEAD_PARENT_RUN_ID names it, so that every
    stage_run started meanwhile – in this process or in a child process – nests under it. Itself
    nests under an outer LEAD_PARENT_RUN_ID (a sweep over pipelines). Without a tracking URI: a
    no-op tracker, environment untouched."""
    uri = tracking_uri()
    if uri is None:
        yield StageTracker()
        return
    with _fast_fail_http():
        tracker = _start_run(uri, run_name or name, {**_base_tags(), "pipeline": name}, flush_interval_s)
        outer_parent = os.environ.get(PARENT_RUN_ENV)
        if tracker.enabled and tracker.run_id:
            os.environ[PARENT_RUN_ENV] = tracker.run_id
        try:
            with _run_until_exit(tracker):
                if params:
                    tracker.log_params(params)
                yield tracker
        finally:
            if outer_parent is None:
                os.environ.pop(PARENT_RUN_ENV, None)
            else:
                os.environ[PARENT_RUN_ENV] = outer_parent
