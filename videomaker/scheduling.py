"""The noise schedule VideoMaker trains and samples with (SPEC section 2)."""

from diffusers import DDIMScheduler

# AnimateDiff's linear betas. SD1.5 checkpoints ship `scaled_linear`, which must be overridden:
# the motion modules were trained on this schedule, and training uses it for `add_noise` too.
DDIM_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "clip_sample": False,
    "timestep_spacing": "linspace",
    "steps_offset": 1,
    "prediction_type": "epsilon",
}


def make_scheduler() -> DDIMScheduler:
    """A fresh DDIM scheduler with the VideoMaker schedule (schedulers carry per-run state)."""
    return DDIMScheduler(**DDIM_CONFIG)
