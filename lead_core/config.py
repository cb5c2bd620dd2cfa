"""Typed stage configs: one dataclass per stage, read from a JSON/YAML file, flags, or both.

Every stage module exports `Config` (a dataclass) and `run(config) -> dict`. The flags are
transformers' `HfArgumentParser` over the dataclass (field `foo_bar` -> `--foo-bar`, help text from
`metadata={"help": ...}`, a Literal's values as choices), so the flags, the config file and the KFP
component all speak the same field names. Kept here by hand, because HfArgumentParser has no place
for them: `--config FILE` merged under the flags; reading a value of the wrong type the way a file,
a flag, KFP (an int as "3.0") or `--set key=value` gives it, with errors that name the file and
line or the flag (`ConfigError`, a `UserError`).
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


def _is_list(tp: Any) -> bool:
    return tp in (list, tuple) or get_origin(tp) in (list, tuple)


def _is_dict(tp: Any) -> bool:
    return tp is dict or get_origin(tp) is dict


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
        if _is_list(tp):
            if isinstance(value, str):  # a flag's or KFP's "a,b"
                value = [v for v in value.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"config field {name!r} must be a list, got {value!r}")
            return [_coerce(name, (*get_args(tp), Any)[0], v) for v in value]
        if _is_dict(tp):
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


def flag_parser(cls: type, **kwargs: Any) -> argparse.ArgumentParser:
    """`--config FILE` and HfArgumentParser's flags for the fields of `cls` (`kwargs`: prog, description).

    Changed from HfArgumentParser's, to keep the flags users have: no flag is required (a field may
    come from `--config`); a list is one value `--names a,b`; a bool is `--flag`, `--flag false` or
    `--flag off` (`bool | None` too); no `--foo_bar` spelling; HfArgumentParser's `--no-flag` is
    accepted but not shown in --help.
    Parse with `from_flags`.
    """
    # Imported here: transformers costs about a second of imports (no torch), paid by the CLI only.
    from transformers.hf_argparser import HfArgumentParser

    config_flag = argparse.ArgumentParser(add_help=False)
    config_flag.add_argument(
        "--config", default=argparse.SUPPRESS, help="JSON or YAML file of config fields; flags override it"
    )
    parser = HfArgumentParser(cls, parents=[config_flag], **kwargs)
    hints = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for action in parser._actions:
        field = fields.get(action.dest)
        if field is None:
            continue
        # Only `--foo-bar`: with `--foo_bar` too, Python 3.11 finds an abbreviation `--foo` ambiguous.
        for flag in [flag for flag in action.option_strings if "_" in flag]:
            action.option_strings.remove(flag)
            del parser._option_string_actions[flag]
        if isinstance(action, argparse._StoreFalseAction):  # HfArgumentParser's `--no-flag`
            action.help = argparse.SUPPRESS
            continue
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            action.required, action.default = False, argparse.SUPPRESS  # no "(default: None)" in --help
        tp, _ = _unwrap_optional(hints[field.name])
        if tp is bool:
            action.type, action.nargs, action.const, action.metavar = _parse_bool, "?", True, "BOOL"
        elif _is_list(tp):
            action.type, action.nargs, action.metavar = None, None, "A,B,..."  # items read in from_dict
    return parser


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


def from_flags(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[Any, argparse.Namespace]:
    """The config of `flag_parser(cls)`'s command line `argv`: `--config FILE` merged with the flags
    given (flags win), and the namespace (for flags the caller added). Argparse's usage errors exit 2."""
    (cls,) = parser.dataclass_types
    names = [f.name for f in dataclasses.fields(cls)]
    # A namespace that has every field already gets no argparse defaults: None is "flag not given".
    args = parser.parse_args(argv, namespace=argparse.Namespace(**dict.fromkeys(names)))
    path = getattr(args, "config", None)
    values: dict[str, Any] = load_file(path) if path else {}
    origin = {name: f"{path}: line {line}" for name, line in key_lines(path).items()} if path else {}
    for name in names:
        value = getattr(args, name)
        if value is not None:
            values[name] = value
            origin[name] = "--" + name.replace("_", "-")
    return from_dict(cls, values, where=path or "command line", origin=origin), args


def parse_assignments(items: list[str], types: dict[str, Any]) -> dict[str, Any]:
    """`key=value` items (`--set`) -> {key: value of types[key]}: the text read as a flag's value,
    a list or mapping as YAML (`[a, b]`, `{k: 1}`; a list also `a,b`), then as a config file's."""
    import yaml

    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise ConfigError(f"--set {item!r}: expected key=value with key one of {sorted(types)}")
        tp, _ = _unwrap_optional(types[key])
        try:
            value = yaml.safe_load(text) if _is_list(tp) or _is_dict(tp) else text
            values[key] = _coerce(key, types[key], value)
        except (ConfigError, yaml.YAMLError) as err:
            raise ConfigError(f"--set {item!r}: {' '.join(str(err).split())}") from None
    return values
