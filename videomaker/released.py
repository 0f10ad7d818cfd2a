"""The authors' released VideoMaker weights (Hugging Face `SugerWu/VideoMaker`).

`human_pytorch_model.bin` and `object_pytorch_model.bin` are each a `torch.save` of the whole
diffusers `UNetMotionModel` state dict (motion adapter v1-5-3, no mid-block motion module), which
the released code loads with `unet.load_state_dict(sd, strict=False)` after setting its PISA
processors. Those processors hold no parameters (nor do this project's), so the file's keys are
plain `UNetMotionModel` parameter and buffer names; no key is renamed. A uniform `module.` prefix
(a state dict saved from a DDP/DeepSpeed wrapper) is stripped.

Loading here differs from `strict=False` on purpose:
- `torch.load(weights_only=True)`: plain tensors only, nothing else is unpickled.
- The key set must equal the model's state dict: missing and unexpected keys are named, and a
  file made for another preset (other shapes, or a mid-block motion module) is refused naming
  the fix.
- Only the trainable subset (PISA projections of the spatial `attn1` layers and the motion
  modules, the final model's switches) is copied. The frozen tensors (backbone weights and
  buffers) are compared with the preset's own: the count that differ and the largest difference
  are reported, and `frozen="load"` copies them too, as the released `strict=False` load did.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from videomaker.pisa import PISASwitches
from videomaker.trainable import is_trainable

logger = logging.getLogger(__name__)

RELEASED_REPO = "SugerWu/VideoMaker"
RELEASED_FILES = {"human": "human_pytorch_model.bin", "object": "object_pytorch_model.bin"}
RELEASED_PRESET = "paper"  # Realistic Vision V5.1 + motion adapter v1-5-3
HF_PREFIX = "hf:"
FILE_SUFFIXES = (".bin", ".pt", ".pth")
EXPECTED = (
    "a torch-saved state dict of the whole diffusers UNetMotionModel, as the released "
    f"{RELEASED_REPO} files {sorted(RELEASED_FILES.values())}"
)
_PREFIXES = ("module.",)
_SHOWN = 10  # key names listed per error


def parse_hf_uri(uri: str) -> tuple[str, str]:
    """`hf:OWNER/REPO/FILE` -> (`OWNER/REPO`, `FILE`), refusing anything else."""
    parts = uri[len(HF_PREFIX) :].split("/") if uri.startswith(HF_PREFIX) else []
    if len(parts) < 3 or not all(parts):
        raise ValueError(
            f"`checkpoint` {uri!r} is not a hub file URI: write hf:OWNER/REPO/FILE, e.g. hf:{RELEASED_REPO}/{RELEASED_FILES['human']}."
        )
    return "/".join(parts[:2]), "/".join(parts[2:])


def download_hf_file(uri: str) -> Path:
    """The local copy of `hf:OWNER/REPO/FILE`: from the hub cache (offline with HF_HUB_OFFLINE=1) or downloaded."""
    from huggingface_hub import hf_hub_download

    repo, filename = parse_hf_uri(uri)
    try:
        return Path(hf_hub_download(repo, filename))
    except Exception as error:  # noqa: BLE001 - hub errors (offline miss, 404, network) get one actionable message
        raise FileNotFoundError(
            f"`checkpoint` {uri!r}: could not get {filename!r} of hub repo {repo!r} ({type(error).__name__}: {error}). "
            f"Offline, stage it first (`videomaker models stage DIR --released`, then pass `--models-dir DIR`), or "
            f"download it with `hf download {repo} {filename}` and pass the file's path."
        ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a released-format file with `weights_only=True`, refusing a truncated file or a non-state-dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`checkpoint` {str(path)!r}: no such file; expected {EXPECTED}.")
    zipped = zipfile.is_zipfile(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError) as error:
        size = path.stat().st_size
        raise ValueError(
            f"`checkpoint` {str(path)!r} ({size} bytes) could not be read as {EXPECTED} "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). A truncated download is the "
            f"usual cause: fetch the file again (`hf download {RELEASED_REPO} FILE`)."
        ) from None
    if not isinstance(loaded, dict) or not loaded:
        raise ValueError(f"`checkpoint` {str(path)!r} holds a {type(loaded).__name__}{' (empty)' if loaded == {} else ''}, not {EXPECTED}.")
    bad = [key for key, value in loaded.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if bad:
        raise ValueError(
            f"`checkpoint` {str(path)!r} is a dict but not a state dict: entries {bad[:_SHOWN]} are not "
            f"name -> tensor; expected {EXPECTED}."
        )
    for prefix in _PREFIXES:
        if all(key.startswith(prefix) for key in loaded):
            loaded = {key[len(prefix) :]: value for key, value in loaded.items()}
    return dict(loaded)


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return f"{len(names)}: {names[:_SHOWN]}{more}"


@dataclass
class ReleasedCheckpoint:
    """A released-format state dict, not yet applied: the final model's switches, no preset recorded.

    Attributes:
        path: The file (or the URI it was given as).
        tensors: The whole UNet state dict, keys as the model names them.
        load_report: Filled by `apply_to`: keys copied, frozen tensors compared and how many differ.
    """

    path: Path | str
    tensors: dict[str, torch.Tensor]
    switches: PISASwitches = field(default_factory=PISASwitches)
    preset: str | None = None
    global_step: int | None = None
    metadata: dict = field(default_factory=dict)
    load_report: dict = field(default_factory=dict)

    def check_against(self, reference: dict[str, torch.Size], *, preset: str) -> None:
        """Refuse a key set or shapes that differ from the model's state dict (`name -> shape`)."""
        missing = sorted(set(reference) - set(self.tensors))
        unexpected = sorted(set(self.tensors) - set(reference))
        if missing or unexpected:
            hint = ""
            if any(k.startswith("mid_block.motion_modules.") for k in unexpected):
                hint = (
                    " The file has a mid-block motion module (motion adapter v1-5-2 layout) that the model lacks; "
                    "load it with a preset built on that adapter."
                )
            elif any(k.startswith("mid_block.motion_modules.") for k in missing):
                hint = (
                    f" The model has a mid-block motion module (motion adapter v1-5-2) but the file has none: the "
                    f"released {RELEASED_REPO} files are for motion adapter v1-5-3 (preset {RELEASED_PRESET!r})."
                )
            raise ValueError(
                f"`checkpoint` {self.path} does not fit the UNet of preset {preset!r}: missing keys {_listed(missing)}; "
                f"unexpected keys {_listed(unexpected)}.{hint} Expected {EXPECTED}."
            )
        mismatched = [
            f"{name}: file {tuple(self.tensors[name].shape)} vs model {tuple(shape)}"
            for name, shape in reference.items()
            if self.tensors[name].shape != shape
        ]
        if mismatched:
            raise ValueError(
                f"`checkpoint` {self.path} was made for another preset than {preset!r}: {len(mismatched)} tensors have "
                f"other shapes, e.g. {mismatched[:3]}. The released {RELEASED_REPO} files fit preset "
                f"{RELEASED_PRESET!r}: pass `--preset {RELEASED_PRESET}` (or the preset the file was trained for)."
            )

    def trainable_keys(self, parameter_names: Iterable[str]) -> list[str]:
        """The file's keys that are trained parameters of the model (buffers such as `pos_embed.pe` are not)."""
        parameters = set(parameter_names)
        return [name for name in self.tensors if name in parameters and is_trainable(name, update_motion=self.switches.update_motion)]

    def apply_to(self, unet: torch.nn.Module, *, preset: str, frozen: Literal["compare", "load"] = "compare") -> dict:
        """Check the file against `unet` and copy the trainable tensors in.

        Args:
            unet: The preset's `UNetMotionModel` (PISA installed or not: processors add no keys).
            preset: Its name, for messages.
            frozen: `compare` (default) checks the frozen tensors against the model's and reports
                the differences; `load` copies them as well, like the released `strict=False` load.

        Returns:
            The load report (also kept in `load_report`).
        """
        if frozen not in ("compare", "load"):
            raise ValueError(f"`frozen` must be 'compare' or 'load', got {frozen!r}.")
        state = unet.state_dict(keep_vars=True)
        self.check_against({name: tensor.shape for name, tensor in state.items()}, preset=preset)
        trainable = set(self.trainable_keys(name for name, _ in unet.named_parameters()))
        differing, max_diff = [], 0.0
        with torch.no_grad():
            for name, target in state.items():
                source = self.tensors[name]
                if name in trainable or frozen == "load":
                    target.copy_(source)
                    continue
                # Compared in the model's dtype, so a float16 model does not count rounding as a difference.
                cast = source.to(device=target.device, dtype=target.dtype).to(torch.float32)
                diff = (cast - target.detach().to(torch.float32)).abs().max().item() if source.numel() else 0.0
                if diff > 0:
                    differing.append(name)
                    max_diff = max(max_diff, diff)
        self.load_report = {
            "format": "released",
            "trainable_loaded": len(trainable),
            "frozen_policy": frozen,
            "frozen_tensors": len(state) - len(trainable),
            "frozen_differing": len(differing) if frozen == "compare" else None,
            "frozen_max_abs_diff": max_diff if frozen == "compare" else None,
            "frozen_differing_examples": differing[:_SHOWN],
        }
        if differing:
            logger.warning(
                "Released checkpoint %s: %d frozen tensors differ from preset %r's (max |diff| %.3g, e.g. %s); "
                "only the trainable ones were loaded (frozen='load' takes them all).",
                self.path,
                len(differing),
                preset,
                max_diff,
                differing[:3],
            )
        return self.load_report


def looks_released(path: Path) -> bool:
    return path.is_file() and path.suffix in FILE_SUFFIXES


def released_files_in(directory: Path) -> list[Path]:
    """Released-format files directly in `directory` (a staged weight folder or a hub snapshot)."""
    return sorted(p for p in directory.iterdir() if looks_released(p))


def load_released(path: str | Path, *, source: str | None = None) -> ReleasedCheckpoint:
    """Read a released-format file (see the module docstring); `source` is how the user named it."""
    tensors = read_state_dict(path)
    return ReleasedCheckpoint(
        path=source or Path(path), tensors=tensors, metadata={"format": "released", "file": str(path), "source": source or str(path)}
    )
