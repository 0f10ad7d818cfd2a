"""Typed configs: validate a dict into a config dataclass, print it back, describe its keys.

Every job's config is a plain (stdlib) dataclass, grouped into nested dataclasses, whose docstring
documents each field in an `Args:` section. Pydantic checks a dict against the dataclass's type hints
(`Literal` for closed choices, nested groups, lists, optionals) before `__post_init__` runs the
cross-field checks, and every refusal becomes one `ValueError` that names the dotted key, the value
it got and what to write instead:

    config = validate(PreprocessConfig, {"input": "videos/", "output_dir": "out/", "clips": {"size": 256}})
    print(to_yaml(config))            # every key, resolved, as YAML that validates back to `config`
    print(describe(PreprocessConfig)) # every key with its type, default and documentation
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

# YAML 1.1 reads these bare words as booleans; a string key given one of them got a bool.
_YAML_BOOL_WORDS = {True: "yes/on/true", False: "no/off/false"}


@functools.cache
def _adapter(cls: type):
    from pydantic import TypeAdapter

    _forbid_unknown_keys(cls)
    return TypeAdapter(cls)


def _forbid_unknown_keys(cls: type) -> None:
    """Pydantic ignores unknown keys of a stdlib dataclass unless the class says otherwise; a
    misspelt key must be refused, so every config group in the tree says so."""
    from pydantic import ConfigDict

    if "__pydantic_config__" not in vars(cls):
        cls.__pydantic_config__ = ConfigDict(extra="forbid")
    for hint in _hints(cls).values():
        for inner in _members(hint):
            if dataclasses.is_dataclass(inner):
                _forbid_unknown_keys(inner)


def _members(hint: Any) -> list[Any]:
    """Every type a hint names (`list[X | None]` -> list, X, NoneType)."""
    found = [hint]
    for arg in typing.get_args(hint):
        if arg is not Ellipsis and not isinstance(arg, str):
            found.extend(_members(arg))
    return found


def _json_default(value: Any) -> Any:
    """Values a caller may hand over already typed: nested config instances, paths, sets."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot be read as a config value: {value!r} ({type(value).__name__})")


def validate(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """An instance of dataclass `cls` from `data`, checked against its type hints.

    Strict: a value of the wrong type is refused, never coerced (`"5"` is not an int, `no` is not
    a string choice); an unknown key is refused with the valid keys of its group. The dict goes
    through JSON first, so lists fill tuple fields and ints fill float fields, as YAML writes them.
    """
    from pydantic import ValidationError

    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"validate: {cls!r} is not a dataclass.")
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping of settings, got {type(data).__name__} {data!r}.")
    try:
        text = json.dumps(data, default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}.") from error
    try:
        return _adapter(cls).validate_json(text, strict=True)
    except ValidationError as error:
        messages = _messages(cls, error.errors(include_url=False), where)
        raise ValueError("\n".join(messages)) from None


# -- error messages -------------------------------------------------------------------------------


def _unwrap_optional(hint: Any) -> list[Any]:
    """The members of a union (`X | None` -> [X, NoneType]); any other hint alone."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return list(typing.get_args(hint))
    return [hint]


def _walk(cls: type, loc: tuple) -> tuple[list[str], Any, type | None]:
    """The key path of a pydantic error location (union tags dropped), the hint at its end, and
    the dataclass holding the last key."""
    path: list[str] = []
    hint: Any = cls
    holder: type | None = cls
    for part in loc:
        members = [m for m in _unwrap_optional(hint) if m is not type(None)]
        dataclass_members = [m for m in members if dataclasses.is_dataclass(m)]
        if isinstance(part, str) and any(part in _hints(m) for m in dataclass_members):
            holder = next(m for m in dataclass_members if part in _hints(m))
            path.append(part)
            hint = _hints(holder)[part]
        elif isinstance(part, str) and dataclass_members:
            # A key the group does not have (unknown key) or a union tag naming a dataclass member.
            if part in {m.__name__ for m in dataclass_members}:
                continue
            holder = dataclass_members[0]
            path.append(part)
            hint = None
        elif isinstance(part, int) and any(typing.get_origin(m) in (list, tuple) for m in members):
            container = next(m for m in members if typing.get_origin(m) in (list, tuple))
            path[-1:] = [f"{path[-1]}[{part}]"] if path else [f"[{part}]"]
            args = [a for a in typing.get_args(container) if a is not Ellipsis]
            hint = args[0] if args else Any
        elif isinstance(part, str) and any(typing.get_origin(m) is dict or m is dict for m in members):
            path.append(part)
            container = next(m for m in members if typing.get_origin(m) is dict or m is dict)
            args = typing.get_args(container)
            hint = args[1] if len(args) == 2 else Any
        # Anything else is a union tag (`int`, `str`, `literal[...]`): not a key.
    return path, hint, holder


def _messages(cls: type, errors: list[dict], where: str) -> list[str]:
    seen: dict[str, str] = {}
    for error in errors:
        path, hint, holder = _walk(cls, tuple(error["loc"]))
        key = ".".join([where, *path]) if path else where
        if key in seen:
            continue  # a union reports one error per member; the first says enough
        seen[key] = _message(key, error, hint, holder)
    return list(seen.values())


def _message(key: str, error: dict, hint: Any, holder: type | None) -> str:
    kind, value = error["type"], error.get("input")
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        valid = sorted(_hints(holder)) if holder is not None else []
        return f"{key}: unknown key. Valid keys here: {valid}."
    if kind == "missing":
        return f"{key}: required; set it in the config file or with --set {key.split('.', 1)[-1]}=..."
    if kind == "value_error":
        text = error["msg"].removeprefix("Value error, ")
        return f"{key}: {text}"
    expected = type_name(hint) if hint is not None else "see `--print-config=keys`"
    leaf = key.split(".")[-1]
    if isinstance(value, bool) and _expects_string(hint):
        words = [w for w in _YAML_BOOL_WORDS[value].split("/") if w in _string_choices(hint)] or _YAML_BOOL_WORDS[value].split("/")[:1]
        return (
            f"{key}: got the boolean {value} where {expected} is expected: YAML reads a bare "
            f'{_YAML_BOOL_WORDS[value]} as a boolean. Quote the word, e.g. {leaf}: "{words[0]}".'
        )
    if kind in ("list_type", "tuple_type") and not isinstance(value, (dict, list)):
        return f"{key}: got {value!r}, expected {expected}: write a list, e.g. [{json.dumps(value)}]."
    if kind == "literal_error":
        return f"{key}: got {value!r}; choose one of {expected}."
    return f"{key}: got {value!r} ({type(value).__name__}), expected {expected}."


def _string_choices(hint: Any) -> list[str]:
    return [a for m in _unwrap_optional(hint) if typing.get_origin(m) is typing.Literal for a in typing.get_args(m) if isinstance(a, str)]


def _expects_string(hint: Any) -> bool:
    for member in _unwrap_optional(hint):
        if member is str:
            return True
        if typing.get_origin(member) is typing.Literal and any(isinstance(a, str) for a in typing.get_args(member)):
            return True
    return False


# -- printing and describing ----------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in (sorted(value) if isinstance(value, (set, frozenset)) else value)]
    if isinstance(value, Path):
        return str(value)
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """Every field of a config instance as plain JSON types; `validate(type(config), to_dict(config))`
    gives an equal config."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"to_dict: expected a config dataclass instance, got {type(config).__name__}.")
    return _plain(dataclasses.asdict(config))


def to_yaml(config: Any) -> str:
    """The config as YAML, keys in field order; strings YAML would misread (`no`, `1e-4`) are quoted."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=False, allow_unicode=True)


def write_resolved(config: Any, directory_or_uri: str | Path, name: str = "config.yaml") -> str:
    """Write the resolved config as YAML beside a job's outputs (a local folder or an object-storage
    URI); returns the location written."""
    from videomaker import storage

    location = storage.join(directory_or_uri, name)
    storage.write_text(location, to_yaml(config))
    return location


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {name: hint for name, hint in typing.get_type_hints(cls).items() if name in names}


def type_name(hint: Any) -> str:
    """A type hint as a reader writes it: `int`, `str | None`, `list[int]`, `'shp' | 'raw_frame'`."""
    if hint is type(None):
        return "null"
    if hint is Any:
        return "any"
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) if isinstance(a, str) else repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(hint))
    if origin in (list, tuple, set, frozenset):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return f"list[{type_name(args[0])}]" if args else "list"
    if origin is dict:
        args = typing.get_args(hint)
        return f"mapping[{type_name(args[0])}, {type_name(args[1])}]" if args else "mapping"
    if hint is dict:
        return "mapping"
    if dataclasses.is_dataclass(hint):
        return f"{hint.__name__} {{{', '.join(f.name for f in dataclasses.fields(hint))}}}"
    return getattr(hint, "__name__", str(hint))


def field_docs(cls: type) -> dict[str, str]:
    """Each field's documentation from the class docstring's `Args:` section; an entry may document
    several fields at once (`a, b, c: ...`)."""
    doc = inspect.getdoc(cls) or ""
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
    except StopIteration:
        return {}
    docs: dict[str, str] = {}
    names: list[str] = []
    indent = None
    entry = re.compile(r"^(\s+)([A-Za-z_][\w]*(?:\s*,\s*[A-Za-z_][\w]*)*)\s*:\s*(.*)$")
    for line in lines[start + 1 :]:
        if line.strip() and not line.startswith(" "):
            break  # the next section
        match = entry.match(line)
        if match and (indent is None or len(match.group(1)) == indent):
            indent = len(match.group(1))
            names = [n.strip() for n in match.group(2).split(",")]
            for name in names:
                docs[name] = match.group(3).strip()
        elif names and line.strip():
            for name in names:
                docs[name] = f"{docs[name]} {line.strip()}".strip()
    return docs


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _group_class(hint: Any) -> type | None:
    groups = [m for m in _unwrap_optional(hint) if dataclasses.is_dataclass(m)]
    return groups[0] if len(groups) == 1 else None


def describe(cls: type, prefix: str = "", defaults: Any = None) -> str:
    """Every key of config class `cls`, dotted for groups, with its type, default and documentation.

    `defaults` is the group's default instance where its parent sets one (a backend's default name)."""
    out: list[str] = []
    if not prefix:
        summary = (inspect.getdoc(cls) or "").split("\n\n", 1)[0].strip()
        out.append(f"{cls.__name__}: {summary}" if summary else cls.__name__)
        out.append("")
    docs = field_docs(cls)
    hints = _hints(cls)
    for field in dataclasses.fields(cls):
        key = f"{prefix}{field.name}"
        hint = hints[field.name]
        default = getattr(defaults, field.name) if defaults is not None else _default(field)
        group = _group_class(hint)
        doc = docs.get(field.name, "")
        if group is not None and (default is dataclasses.MISSING or dataclasses.is_dataclass(default)):
            nullable = ", or null" if type(None) in _unwrap_optional(hint) else ""
            out.append(f"{key}: group ({group.__name__}{nullable}){' - ' + doc if doc else ''}")
            out.append(describe(group, f"{key}.", default if dataclasses.is_dataclass(default) else None))
            continue
        if default is dataclasses.MISSING:
            shown = "required"
        else:
            shown = "default " + json.dumps(_plain(to_dict(default) if dataclasses.is_dataclass(default) else default))
        out.append(f"{key}: {type_name(hint)}, {shown}")
        if doc:
            out.append(f"    {doc}")
    return "\n".join(line for line in out if line != "" or not prefix)
