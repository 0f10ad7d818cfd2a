"""Job configs: nested dataclasses filled from YAML plus dotted command-line overrides.

videomaker preprocess --config jobs/configs/preprocess_demo.yaml --set clips.size=256 --set resources.detect.max_size=4
videomaker preprocess --config jobs/configs/preprocess_demo.yaml --print-config        # the resolved config
videomaker preprocess --print-config=keys                                              # every key, documented
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pipelines.configs import describe, to_yaml, validate

T = TypeVar("T")


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """`key.sub=value` strings onto a nested dict; values are parsed as YAML (numbers, lists, null)."""
    for override in overrides:
        if "=" not in override:
            raise ValueError(f"--set {override!r}: expected KEY=VALUE, e.g. --set resources.detect.max_size=4.")
        key, raw = override.split("=", 1)
        *parents, leaf = key.strip().split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {override!r}: {part!r} is not a group of settings.")
        node[leaf] = yaml.safe_load(raw)
    return data


def build(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Instantiate dataclass `cls` from a dict, type-checked (see `pipelines.configs.validate`)."""
    return validate(cls, data, where)


def overrides_from_flags(args: argparse.Namespace, flags: dict[str, str]) -> list[str]:
    """`--set` overrides plus each given shortcut flag (attribute -> config key), flags last so they win."""
    overrides = list(args.set)
    for attribute, key in flags.items():
        value = getattr(args, attribute)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    return overrides


MODELS_DIR_ENV = "VIDEOMAKER_MODELS_DIR"


def add_models_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models-dir",
        default=os.environ.get(MODELS_DIR_ENV),
        help="Directory staged by `videomaker models stage`: every weight the config names that is "
        f"staged there is read from it (offline clusters). Default: ${MODELS_DIR_ENV}.",
    )


EXTENDS_KEY = "extends"


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def read_config_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A YAML config as a dict; `extends: <path relative to this file>` starts from that file's settings
    and overrides them key by key (nested groups merge, lists and values are replaced)."""
    path = Path(path)
    if not path.is_file():
        where = f" (extended by {_seen[-1]})" if _seen else ""
        raise FileNotFoundError(f"--config {str(path)!r}{where}: no such file.")
    if path.resolve() in _seen:
        raise ValueError(f"--config {str(path)!r}: `{EXTENDS_KEY}` loops back to a file that extends it.")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {str(path)!r} must hold a mapping of settings, got {type(data).__name__}.")
    base = data.pop(EXTENDS_KEY, None)
    if base is None:
        return data
    return _merge(read_config_file(path.parent / base, (*_seen, path.resolve())), data)


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None, *, models_dir: str | Path | None = None) -> T:
    """Read YAML at `path` (optional), apply `overrides`, validate through the dataclass, and read
    the weights it names from `models_dir` where they are staged."""
    data = read_config_file(path) if path is not None else {}
    config = build(cls, apply_overrides(data, overrides or []))
    if models_dir is None:
        return config
    from jobs.staging import use_staged_weights

    return use_staged_weights(config, models_dir)


PRINT_CONFIG_CHOICES = ("yaml", "keys")


def add_config_arguments(parser: argparse.ArgumentParser, config_class: str, *, set_example: str) -> None:
    """`--config`, `--set` and `--print-config`, the same on every job that takes a config.

    `config_class` names the dataclass in help texts (e.g. `PreprocessConfig (pipelines/preprocess/config.py)`);
    `set_example` shows two overrides of that job's keys."""
    parser.add_argument("--config", help=f"YAML file with {config_class} fields; `extends: FILE` starts from another file.")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"Override any config key, dotted for groups, the value read as YAML: {set_example}.",
    )
    parser.add_argument(
        "--print-config",
        nargs="?",
        const="yaml",
        choices=PRINT_CONFIG_CHOICES,
        metavar="{yaml,keys}",
        help="Print the resolved config (after --config, --set and the flags) as YAML and exit; "
        "`--print-config=keys` prints every key with its type, default and documentation instead.",
    )


def job_config(cls: type[T], args: argparse.Namespace, flags: dict[str, str]) -> T | None:
    """The config a job runs with: `--config`, then `--set`, then the shortcut `flags`, then staged weights.
    With `--print-config` it is printed instead and None returned: the job then exits 0 without running."""
    if getattr(args, "print_config", None) == "keys":
        print(describe(cls))
        return None
    config = load_config(cls, args.config, overrides_from_flags(args, flags), models_dir=getattr(args, "models_dir", None))
    if getattr(args, "print_config", None):
        print(to_yaml(config), end="")
        return None
    return config
