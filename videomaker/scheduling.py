"""The noise schedule VideoMaker trains and samples with: the backbone's stored DDIM config plus overrides.

The released inference code builds its scheduler as
`DDIMScheduler.from_pretrained(backbone, subfolder="scheduler", **RELEASE_OVERRIDES)`: AnimateDiff's
linear betas replace the backbone's `scaled_linear`, and every field the overrides do not name
(`set_alpha_to_one`, `beta_start`, `beta_end`, `prediction_type`, ...) comes from the backbone's
stored `scheduler/scheduler_config.json`. `set_alpha_to_one` decides the last DDIM step: SD1.5
lineage configs store `false` (the last step lands on `alphas_cumprod[0]`), DDIMScheduler's own
default is `true` (lands on 1.0), so building from defaults would change every video's last step.

Training's `add_noise` uses the same scheduler object (`VideoMakerComponents.scheduler`), so the
two never drift apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from diffusers import DDIMScheduler

logger = logging.getLogger(__name__)

SCHEDULER_SUBFOLDER = "scheduler"

# What the released inference code passes on top of the backbone's stored config.
RELEASE_OVERRIDES = {
    "clip_sample": False,
    "timestep_spacing": "linspace",
    "beta_schedule": "linear",
    "steps_offset": 1,
}

# The scheduler config SD1.5 checkpoints store (runwayml/stable-diffusion-v1-5 lineage). Used only
# when a backbone has none, e.g. the random-initialised `tiny` preset; the fallback is recorded.
SD15_STORED_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "trained_betas": None,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}

# Kept for callers that want the effective schedule as one dict (fallback + overrides).
DDIM_CONFIG = {**SD15_STORED_CONFIG, **RELEASE_OVERRIDES}


@dataclass(frozen=True)
class SchedulerOrigin:
    """Where a scheduler's config came from, for provenance records.

    Args:
        source: `"<backbone>/scheduler"` when read from the backbone, else `"fallback:sd15"`.
        overrides: The fields set on top of the stored config.
        fallback_reason: Why the stored config was not used; None when it was.
        config: The resulting DDIM config (JSON-ready).
    """

    source: str
    overrides: dict = field(default_factory=lambda: dict(RELEASE_OVERRIDES))
    fallback_reason: str | None = None
    config: dict = field(default_factory=dict)

    def as_record(self) -> dict:
        return {
            "source": self.source,
            "overrides": dict(self.overrides),
            "fallback_reason": self.fallback_reason,
            "config": dict(self.config),
        }


def _config_record(scheduler: DDIMScheduler) -> dict:
    return {key: value for key, value in dict(scheduler.config).items() if not key.startswith("_")}


def load_scheduler(base_model: str | Path | None = None, *, reason_if_none: str | None = None) -> tuple[DDIMScheduler, SchedulerOrigin]:
    """The VideoMaker DDIM scheduler of a backbone, and where its config came from.

    Args:
        base_model: Hub id or directory of the SD1.5-layout backbone whose `scheduler/` config is
            read (as `DDIMScheduler.from_pretrained(base_model, subfolder="scheduler", ...)`). None
            (a random-initialised preset) or a backbone without a stored scheduler config falls back
            to the SD1.5 stored config, with a warning and the reason in the returned origin.
        reason_if_none: The reason recorded when `base_model` is None.

    Returns:
        `(scheduler, origin)`; the scheduler always carries `RELEASE_OVERRIDES`.

    Example:
        >>> scheduler, origin = load_scheduler("/models/Realistic_Vision_V5.1_noVAE")
        >>> scheduler.config.beta_schedule, origin.fallback_reason
        ('linear', None)
    """
    if base_model is not None:
        try:
            scheduler = DDIMScheduler.from_pretrained(str(base_model), subfolder=SCHEDULER_SUBFOLDER, **RELEASE_OVERRIDES)
        except (OSError, ValueError) as error:  # no stored config (or not readable): fall back, saying why
            reason = f"backbone {str(base_model)!r} has no readable {SCHEDULER_SUBFOLDER}/ config ({type(error).__name__}: {error})"
            logger.warning("Scheduler: %s; using the SD1.5 stored config with the release overrides.", reason)
        else:
            return scheduler, SchedulerOrigin(f"{base_model}/{SCHEDULER_SUBFOLDER}", config=_config_record(scheduler))
    else:
        reason = reason_if_none or "no backbone given"
    scheduler = DDIMScheduler(**DDIM_CONFIG)
    return scheduler, SchedulerOrigin("fallback:sd15", fallback_reason=reason, config=_config_record(scheduler))


def make_scheduler(base_model: str | Path | None = None) -> DDIMScheduler:
    """A fresh VideoMaker DDIM scheduler (schedulers carry per-run state); see `load_scheduler`."""
    return load_scheduler(base_model, reason_if_none="make_scheduler() without a backbone")[0]


def save_scheduler_config(base_model: str | Path, directory: str | Path) -> bool:
    """Copy a backbone's stored scheduler config, unchanged, into `directory/scheduler/`.

    Returns False (and writes nothing) when the backbone stores none.
    """
    try:
        config = DDIMScheduler.load_config(str(base_model), subfolder=SCHEDULER_SUBFOLDER)
    except (OSError, ValueError):
        return False
    import json

    target = Path(directory) / SCHEDULER_SUBFOLDER
    target.mkdir(parents=True, exist_ok=True)
    (target / "scheduler_config.json").write_text(json.dumps(dict(config), indent=2))
    return True
