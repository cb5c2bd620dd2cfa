"""Typed stage configs: one dataclass per stage, read from a JSON/YAML file, flags, or both.

Every stage module exports `Config` (a dataclass) and `run(config) -> dict`. The CLI builds its
flags from the dataclass fields (name `foo_bar` -> `--foo-bar`), so the flags, the config file
and the KFP component all speak the same field names. A field's help text is its
`metadata={"help": ...}`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from lead_core.errors import UserError

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A config file or flag has a wrong name or value."""


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Convert a value from a config file to the field's type, or raise ConfigError."""
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config field {name!r} may not be null")
    origin = get_origin(tp)
    try:
        if origin is Literal:
            if value not in get_args(tp):
                raise ConfigError(f"config field {name!r} must be one of {list(get_args(tp))}, got {value!r}")
            return value
        if origin in (list, tuple):
            (item,) = get_args(tp)[:1]
            if isinstance(value, str):
                value = [v for v in value.split(",") if v.strip()]
            return [_coerce(name, item, v) for v in value]
        if origin is dict or tp is dict:
            if isinstance(value, str):
                value = json.loads(value)
            if not isinstance(value, dict):
                raise ConfigError(f"config field {name!r} must be a mapping, got {value!r}")
            return value
        if tp is bool:
            return value if isinstance(value, bool) else _parse_bool(str(value))
        if tp in (int, float, str):
            if tp is int and isinstance(value, str) and "." in value:
                value = float(value)  # KFP renders integers inside dict parameters as "3.0"
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ConfigError(f"config field {name!r} must be an integer, got {value!r}")
            return tp(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(
            f"config field {name!r}: cannot read {value!r} as {getattr(tp, '__name__', tp)}: {err}"
        ) from err
    return value


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(
    cls: type[T], values: dict[str, Any], where: str = "config", origin: dict[str, str] | None = None
) -> T:
    """Build `cls` from a mapping, rejecting unknown fields and converting types.

    Errors begin with `where`, or for one field with `origin[field]` when given (the file and line
    or the flag its value came from).
    """
    origin = origin or {}
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{origin.get(unknown[0], where)}: unknown field(s) {unknown}; known fields are {sorted(names)}"
        )
    kwargs = {}
    for name, value in values.items():
        try:
            kwargs[name] = _coerce(name, hints[name], value)
        except ConfigError as err:
            raise ConfigError(f"{origin.get(name, where)}: {err}") from None
    try:
        return cls(**kwargs)
    except ConfigError as err:  # a check in the dataclass's __post_init__
        raise ConfigError(f"{where}: {err}") from None
    except TypeError as err:
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        raise ConfigError(f"{where}: missing required field(s) {missing}") from err


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (for artifact metadata and MLflow params)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def _yaml_error(path: Path, err: Exception) -> str:
    """One line naming the file, line and column (1-based) of a YAML syntax error.

    PyYAML's own message names ``<unicode string>`` and spans several lines; its marks are 0-based.
    """
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"{path}: line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(path)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    return f"{where}: not valid YAML: {f'{context}, ' if context else ''}{problem}"


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML config file into a dict."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (IsADirectoryError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not a readable config file ({err})") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(_yaml_error(path, err)) from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(
                f"{path}: line {err.lineno}, column {err.colno}: not valid JSON: {err.msg}"
            ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of field names to values")
    return data


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add `--config FILE` and one flag per dataclass field to `parser`."""
    parser.add_argument("--config", help="JSON or YAML file of config fields; flags override it")
    hints = _field_types(cls)
    for field in dataclasses.fields(cls):
        tp, _ = _unwrap_optional(hints[field.name])
        flag = "--" + field.name.replace("_", "-")
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        help_text = field.metadata.get("help", "")
        if not required:
            default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
            help_text = f"{help_text} (default: {default})".strip()
        kwargs: dict[str, Any] = {"dest": field.name, "default": None, "help": help_text}
        origin = get_origin(tp)
        if origin is Literal:
            kwargs["choices"] = list(get_args(tp))
        elif tp is bool:
            kwargs["type"] = _parse_bool
            kwargs["nargs"] = "?"
            kwargs["const"] = True
            kwargs["metavar"] = "BOOL"
        elif origin in (list, tuple):
            kwargs["metavar"] = "A,B,..."
        elif tp in (int, float):
            kwargs["type"] = tp
        parser.add_argument(flag, **kwargs)


def key_lines(path: str | Path) -> dict[str, int]:
    """The 1-based line of each top-level key's value in a YAML or JSON file ({} if it cannot tell)."""
    import yaml

    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {
        key.value: value.start_mark.line + 1 for key, value in node.value if isinstance(key, yaml.ScalarNode)
    }


def from_args(cls: type[T], args: argparse.Namespace) -> T:
    """Merge `--config FILE` with the flags given on the command line (flags win)."""
    path = getattr(args, "config", None)
    values: dict[str, Any] = load_file(path) if path else {}
    origin = {name: f"{path}: line {line}" for name, line in key_lines(path).items()} if path else {}
    for field in dataclasses.fields(cls):
        value = getattr(args, field.name, None)
        if value is not None:
            values[field.name] = value
            origin[field.name] = "--" + field.name.replace("_", "-")
    return from_dict(cls, values, where=path or "command line", origin=origin)
