"""Presets: named model setups stored as data, one JSON file each.

A preset says where the weights come from (`base_model`, `motion_adapter`: hub ids or local
directories) and, for random initialisation or offline structural builds, the architecture
configs. A directory written by `videomaker.loading.save_preset` holds a `preset.json` whose
weight sources are sub-directories, so it loads through the very same code path as the paper
preset's hub ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

PRESET_FILE = "preset.json"


@dataclass(frozen=True)
class Preset:
    """A model setup.

    Args:
        name: Preset name, recorded in checkpoints so weights are never loaded into the wrong model.
        base_model: Hub id or directory of an SD1.5-layout model (`unet/`, `vae/`, `text_encoder/`,
            `tokenizer/`). `None` means random initialisation from `architecture`.
        motion_adapter: Hub id or directory of a diffusers `MotionAdapter`; `None` with `base_model`.
        resolution: Default square video size in pixels.
        num_frames: Generated frames per video (the reference makes one more).
        architecture: Component configs (`unet`, `motion_adapter`, `vae`, `text_encoder`).
        init_seed: Seed for random initialisation.
        description: One line for `list_presets`.
    """

    name: str
    base_model: str | None
    motion_adapter: str | None
    resolution: int
    num_frames: int
    architecture: dict[str, Any] = field(default_factory=dict)
    init_seed: int = 0
    description: str = ""

    def __post_init__(self):
        if (self.base_model is None) != (self.motion_adapter is None):
            raise ValueError(
                f"Invalid Preset(name={self.name!r}): `base_model` and `motion_adapter` must both be set "
                f"(pretrained weights) or both be null (random init); got base_model={self.base_model!r}, "
                f"motion_adapter={self.motion_adapter!r}."
            )
        if self.base_model is None and not self.architecture:
            raise ValueError(f"Invalid Preset(name={self.name!r}): a random-init preset needs an `architecture` block.")
        if self.resolution % 8:
            raise ValueError(f"Invalid Preset(name={self.name!r}): `resolution` must be a multiple of 8, got {self.resolution}.")

    @property
    def is_random_init(self) -> bool:
        return self.base_model is None

    def with_sources(self, *, base_model: str | None = None, motion_adapter: str | None = None) -> Preset:
        """Same preset, weights read from other places (e.g. a staged local copy of the hub ids)."""
        return replace(
            self,
            base_model=base_model or self.base_model,
            motion_adapter=motion_adapter or self.motion_adapter,
        )


def _builtin_files() -> dict[str, Any]:
    return {entry.name[: -len(".json")]: entry for entry in resources.files(__package__).iterdir() if entry.name.endswith(".json")}


def list_presets() -> list[str]:
    """Names of the presets shipped with videomaker."""
    return sorted(_builtin_files())


def _from_dict(data: dict[str, Any], source: str) -> Preset:
    known = set(Preset.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"Preset {source} has unknown keys {unknown}. Known keys: {sorted(known)}.")
    return Preset(**data)


def load_preset(name_or_path: str | Path) -> Preset:
    """Load a shipped preset by name, or a preset directory written by `save_preset`.

    Example:
        >>> load_preset("tiny").resolution
        64
    """
    builtin = _builtin_files()
    if isinstance(name_or_path, str) and name_or_path in builtin:
        return _from_dict(json.loads(builtin[name_or_path].read_text()), repr(name_or_path))

    path = Path(name_or_path)
    preset_file = path / PRESET_FILE if path.is_dir() else path
    if not preset_file.is_file():
        raise ValueError(
            f"Preset {str(name_or_path)!r} not found: it is neither a shipped preset nor a directory with "
            f"{PRESET_FILE}. Available: {sorted(builtin)}."
        )
    data = json.loads(preset_file.read_text())
    # Weight sources inside a preset directory are stored relative to it so the directory can move.
    for key in ("base_model", "motion_adapter"):
        value = data.get(key)
        if value is not None and (preset_file.parent / value).exists():
            data[key] = str((preset_file.parent / value).resolve())
    return _from_dict(data, str(preset_file))
