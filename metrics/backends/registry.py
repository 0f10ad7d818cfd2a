"""Backends by registry name: the spec a config names one by, and the registry that builds it.

The metric backends (`metrics.backends.METRIC_BACKENDS`) and the preprocessing backends
(`pipelines.preprocess.backends.SHP_BACKENDS`) each keep one `BackendRegistry`; both check a spec's
options against the backend constructor's signature while the job plans, before anything launches.

Example:
    >>> registry = BackendRegistry({"flow": {"opencv": "metrics.backends.flow:OpenCVFlow"}})
    >>> flow = registry.build("flow", BackendSpec("opencv", {"method": "farneback"}))
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WEIGHT_KINDS = ("hf-repo", "hf-file", "url", "torchvision", "open_clip", "local")


@dataclass(frozen=True)
class WeightSource:
    """One weight a job reads and where it comes from (what `videomaker models stage` fetches).

    Args:
        name: Folder of the staged copy and its label ("clip", "sam", ...).
        kind: How it is fetched: `hf-repo` (hub repo id), `hf-file` (one file of a hub repo,
            "OWNER/REPO/FILE"), `url`, `torchvision` (a `Raft_Large_Weights` tag), `open_clip`
            ("MODEL:TAG"), or `local` (a file or directory, copied).
        source: The repo id, repo file, URL, tag or path.
        allow_patterns: Files of an `hf-repo` to fetch; None fetches all but other frameworks' weights.
        aliases: Other spellings configs use for the same weight (e.g. the path it is staged for).
    """

    name: str
    kind: str
    source: str
    allow_patterns: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in WEIGHT_KINDS:
            raise ValueError(f"Invalid WeightSource(kind={self.kind!r}) for {self.name!r}; choose from {list(WEIGHT_KINDS)}.")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ValueError(f"Invalid WeightSource(name={self.name!r}): use letters, digits, '.', '_', '-' (it names a folder).")


class MissingOption(ValueError):
    """A backend's `weights(options)` needs an option that is not set; the registry names the config key."""

    def __init__(self, option: str) -> None:
        super().__init__(f"`{option}` is not set; the backend needs it to find its weights.")
        self.option = option


def required_option(options: Mapping[str, Any], key: str) -> str:
    """`options[key]` as text, or `MissingOption` when it is unset or empty."""
    if not options.get(key):
        raise MissingOption(key)
    return str(options[key])


def option_or_default(cls: type, options: Mapping[str, Any], key: str) -> Any:
    """`options[key]`, else the default of that constructor argument of `cls`."""
    return options.get(key, inspect.signature(cls).parameters[key].default)


def weight_at(
    name: str, value: str, *, hub: bool, patterns: tuple[str, ...] | None = None, published: tuple[str, str] | None = None
) -> WeightSource:
    """A config value naming a path or hub id: a present path as is, else where it is published.

    Args:
        name: The weight's staged name.
        value: The path or hub id the config gives.
        hub: Whether `value` may be a hub repo id (OWNER/NAME).
        patterns: Files of a hub repo to fetch.
        published: `(kind, source)` the backend knows `value`'s file is published at (e.g. a SAM
            checkpoint's URL); the config's spelling stays an alias.
    """
    if Path(value).expanduser().exists():
        return WeightSource(name, "local", value)
    if published is not None:
        kind, source = published
        return WeightSource(name, kind, source, patterns if kind == "hf-repo" else None, aliases=(value,))
    if hub and re.fullmatch(r"[\w-][\w.-]*/[\w.-]+", value):
        return WeightSource(name, "hf-repo", value, patterns)
    return WeightSource(name, "local", value)  # not there yet: staging says where it was looked for


@dataclass
class BackendSpec:
    """A backend by registry name plus its constructor options (weights, paths, sizes, thresholds).

    Args:
        name: The backend's registry name (e.g. `open_clip`, `grabcut`).
        options: Keyword arguments of the backend's constructor.
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)


class BackendRegistry:
    """Backend classes by kind ("clip", "segmenter", ...) and name.

    Args:
        entries: `{kind: {name: class or "module:Class"}}`; a string is imported only when the backend
            is looked up, so listing names needs none of the backends' libraries.
    """

    def __init__(self, entries: Mapping[str, Mapping[str, type | str]]) -> None:
        self._entries = {kind: dict(names) for kind, names in entries.items()}

    @property
    def kinds(self) -> list[str]:
        return list(self._entries)

    def names(self, kind: str) -> list[str]:
        """The registered names of `kind`, sorted."""
        return sorted(self._names(kind))

    def _names(self, kind: str) -> dict[str, type | str]:
        if kind not in self._entries:
            raise ValueError(f"Unknown backend kind {kind!r}. Available: {list(self._entries)}.")
        return self._entries[kind]

    def get(self, kind: str, name: str) -> type:
        """The class registered as `name` for `kind`."""
        names = self._names(kind)
        if name not in names:
            raise ValueError(f"Unknown {kind} {name!r}. Available: {sorted(names)}.")
        entry = names[name]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = names[name] = getattr(importlib.import_module(module), attribute)
        return entry

    def items(self) -> Iterator[tuple[str, str, type]]:
        """Every `(kind, name, class)`, e.g. for staging each backend's weights."""
        for kind in self._entries:
            for name in self.names(kind):
                yield kind, name, self.get(kind, name)

    def check(self, kind: str, spec: BackendSpec, *, where: str = "", provided: tuple[str, ...] = ()) -> type:
        """Refuse an unknown name, an option the constructor does not take or a required one missing.

        Args:
            kind: The backend kind.
            spec: The backend's name and options.
            where: The config key the spec came from, quoted in the message (e.g. `MetricBackendsConfig(flow.options)`).
            provided: Constructor arguments the caller passes itself (e.g. `device`), not needed in options.

        Returns:
            The backend class.
        """
        cls = self.get(kind, spec.name)
        if not isinstance(spec.options, Mapping):
            raise ValueError(f"Invalid {where or kind} options {spec.options!r}: give a mapping of {spec.name}'s constructor arguments.")
        parameters = inspect.signature(cls).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return cls
        accepted = [n for n, p in parameters.items() if p.kind not in (inspect.Parameter.VAR_POSITIONAL,)]
        label = f"Invalid {where}" if where else f"Invalid {kind} options"
        unknown = sorted(set(spec.options) - set(accepted))
        if unknown:
            raise ValueError(f"{label}: {spec.name} takes no {unknown}. Valid options: {sorted(accepted)}")
        missing = sorted(
            n
            for n, p in parameters.items()
            if p.default is inspect.Parameter.empty
            and p.kind is not inspect.Parameter.VAR_POSITIONAL
            and n not in spec.options
            and n not in provided
        )
        if missing:
            raise ValueError(f"{label}: {spec.name} needs {missing}; set them under its options.")
        return cls

    def weights(self, kind: str, spec: BackendSpec, *, where: str = "options") -> list[WeightSource]:
        """The weights the backend `spec` names, as its class declares them (`weights(options)`); none if
        it declares none (a weight-free backend)."""
        declared = getattr(self.get(kind, spec.name), "weights", None)
        if declared is None:
            return []
        try:
            return list(declared(dict(spec.options)))
        except MissingOption as missing:
            raise ValueError(f"`{where}.{missing.option}` is not set; the backend needs it to find its weights.") from None

    def classes_named(self, name: str) -> list[type]:
        """The classes registered as `name` under any kind."""
        return [self.get(kind, name) for kind, names in self._entries.items() if name in names]

    def build(self, kind: str, spec: BackendSpec, *, where: str = "", **defaults: Any) -> Any:
        """The backend instance: `spec.options` plus the `defaults` its constructor takes (e.g. `device`)."""
        cls = self.check(kind, spec, where=where, provided=tuple(defaults))
        parameters = inspect.signature(cls).parameters
        options = {key: value for key, value in defaults.items() if key in parameters} | dict(spec.options)
        return cls(**options)
