"""Trained VideoMaker weights: load a checkpoint, whatever its format.

This project's format is a directory with the trainable tensors in safetensors plus JSON metadata:
only the fine-tuned parameters are stored (the base model comes from the preset), nothing is
unpickled on load, and the metadata names the preset and switches so a checkpoint cannot silently
be applied to a different model or ablation.

`load_checkpoint` also reads the authors' released files (`videomaker.released`): a local `.bin`
file, a directory holding one (a staged weight folder), or `hf:SugerWu/VideoMaker/<file>`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from videomaker import storage
from videomaker.pisa import PISASwitches
from videomaker.trainable import is_trainable

if TYPE_CHECKING:
    from videomaker.released import ReleasedCheckpoint  # `load_checkpoint` imports the module only when called

WEIGHTS_FILE = "trainable.safetensors"
METADATA_FILE = "videomaker.json"
FORMAT_VERSION = 1


def trainable_state_dict(unet: torch.nn.Module, switches: PISASwitches) -> dict[str, torch.Tensor]:
    """The parameters VideoMaker trains under `switches`, detached, keyed by UNet parameter name."""
    return {
        name: parameter.detach() for name, parameter in unet.named_parameters() if is_trainable(name, update_motion=switches.update_motion)
    }


def save_checkpoint(
    directory: str | Path,
    unet: torch.nn.Module,
    *,
    preset: str,
    switches: PISASwitches,
    global_step: int,
    extra: dict | None = None,
) -> Path:
    """Write `trainable.safetensors` and `videomaker.json` into `directory` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.contiguous().cpu() for name, t in trainable_state_dict(unet, switches).items()}
    save_file(tensors, directory / WEIGHTS_FILE)
    metadata = {
        "format_version": FORMAT_VERSION,
        "preset": preset,
        "switches": asdict(switches),
        "global_step": int(global_step),
        "num_tensors": len(tensors),
        "num_parameters": sum(t.numel() for t in tensors.values()),
        **(extra or {}),
    }
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
    return directory


@dataclass
class VideoMakerCheckpoint:
    """A loaded checkpoint: metadata plus tensors, not yet applied to a model."""

    path: Path | str  # a URI when read from object storage
    preset: str
    switches: PISASwitches
    global_step: int
    tensors: dict[str, torch.Tensor]
    metadata: dict

    def apply_to(self, unet: torch.nn.Module, *, preset: str) -> None:
        """Copy the weights into `unet`, refusing another preset or any missing/unexpected key."""
        if preset != self.preset:
            raise ValueError(
                f"Checkpoint {self.path} was trained on preset {self.preset!r}, but the model is preset {preset!r}. "
                f"Load it with preset {self.preset!r}."
            )
        expected = trainable_state_dict(unet, self.switches)
        missing = sorted(set(expected) - set(self.tensors))
        unexpected = sorted(set(self.tensors) - set(expected))
        if missing or unexpected:
            raise ValueError(
                f"Checkpoint {self.path} does not fit the model of preset {preset!r} with switches {self.switches}: "
                f"missing keys {missing}; unexpected keys {unexpected}."
            )
        mismatched = [
            f"{name}: checkpoint {tuple(self.tensors[name].shape)} vs model {tuple(param.shape)}"
            for name, param in expected.items()
            if self.tensors[name].shape != param.shape
        ]
        if mismatched:
            raise ValueError(f"Checkpoint {self.path} has tensors of the wrong shape: {mismatched}.")
        with torch.no_grad():
            for name, param in expected.items():
                param.copy_(self.tensors[name])


def load_checkpoint(directory: str | Path) -> VideoMakerCheckpoint | ReleasedCheckpoint:
    """Read a checkpoint, whatever its format.

    Args:
        directory: One of
            - a directory written by `save_checkpoint` (safetensors + JSON; no pickle), local or a
              URI (s3://...);
            - a released-format file (`human_pytorch_model.bin`, `object_pytorch_model.bin`, or any
              `.bin/.pt/.pth` full UNetMotionModel state dict), local or a URI;
            - a directory holding exactly one such file (e.g. a folder staged by `videomaker models
              stage --released`);
            - `hf:OWNER/REPO/FILE`, e.g. `hf:SugerWu/VideoMaker/human_pytorch_model.bin`, read from
              the hub cache (offline with HF_HUB_OFFLINE=1) or downloaded.

    Returns:
        A `VideoMakerCheckpoint`, or a `videomaker.released.ReleasedCheckpoint`; both have
        `switches`, `path` and `apply_to(unet, preset=...)`.
    """
    from videomaker import released

    text = str(directory)
    if text.startswith(released.HF_PREFIX):
        return released.load_released(released.download_hf_file(text), source=text)
    if not storage.is_local(directory) and Path(storage.name(text)).suffix in released.FILE_SUFFIXES:
        import tempfile

        if storage.size(text) is None:
            raise FileNotFoundError(f"`checkpoint` {text!r}: no such file.")
        with tempfile.TemporaryDirectory(prefix="videomaker-checkpoint-") as scratch:
            local = Path(scratch) / storage.name(text)
            local.write_bytes(storage.read_bytes(text))
            return released.load_released(local, source=text)
    if storage.is_local(directory):
        path = storage.local_path(directory)
        if released.looks_released(path):
            return released.load_released(path)
        if path.is_file():
            raise ValueError(
                f"`checkpoint` {str(path)!r} is a file, but neither a released-format state dict ({', '.join(released.FILE_SUFFIXES)}) "
                f"nor a checkpoint directory: pass the directory holding {WEIGHTS_FILE} and {METADATA_FILE}, or a "
                f"released file such as {released.RELEASED_FILES['human']}."
            )
        if path.is_dir() and not (path / METADATA_FILE).exists():
            files = released.released_files_in(path)
            if len(files) == 1:
                return released.load_released(files[0], source=str(path))
            if len(files) > 1:
                raise ValueError(
                    f"`checkpoint` {str(path)!r} holds several released-format files {[f.name for f in files]}; pass the one to load."
                )
    return _load_native(directory)


def _load_native(directory: str | Path) -> VideoMakerCheckpoint:
    """Read a checkpoint directory written by `save_checkpoint`; a URI's two files are read from there."""
    if not storage.is_local(directory):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="videomaker-checkpoint-") as scratch:
            for name in (WEIGHTS_FILE, METADATA_FILE):
                source = storage.join(directory, name)
                if storage.size(source) is None:
                    raise FileNotFoundError(
                        f"Checkpoint directory {directory} has no {name}; expected {WEIGHTS_FILE} and "
                        f"{METADATA_FILE} as written by `videomaker.checkpoint.save_checkpoint`."
                    )
                (Path(scratch) / name).write_bytes(storage.read_bytes(source))
            loaded = _load_native(scratch)
        return dataclasses.replace(loaded, path=directory)
    directory = storage.local_path(directory)
    weights, metadata_file = directory / WEIGHTS_FILE, directory / METADATA_FILE
    for required in (weights, metadata_file):
        if not required.is_file():
            raise FileNotFoundError(
                f"Checkpoint directory {directory} has no {required.name}; expected {WEIGHTS_FILE} and {METADATA_FILE} "
                "as written by `videomaker.checkpoint.save_checkpoint`, or one released-format file "
                "(e.g. human_pytorch_model.bin)."
            )
    metadata = json.loads(metadata_file.read_text())
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"Checkpoint {directory} has format_version {metadata.get('format_version')!r}; this videomaker reads version {FORMAT_VERSION}."
        )
    return VideoMakerCheckpoint(
        path=directory,
        preset=metadata["preset"],
        switches=PISASwitches(**metadata["switches"]),
        global_step=metadata["global_step"],
        tensors=load_file(weights),
        metadata=metadata,
    )
