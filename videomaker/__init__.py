"""VideoMaker model core: PISA, GIRL, presets, inference and the training step. Imports no Ray."""

import importlib

# Lazy exports: `import videomaker.export` (used by light processes such as video writers) must not
# pay for importing torch, diffusers and transformers.
_EXPORTS = {
    "GIRLConfig": "videomaker.girl",
    "NEGATIVE_PROMPT_HUMAN": "videomaker.pipeline",
    "NEGATIVE_PROMPT_OBJECT": "videomaker.pipeline",
    "PISAAttnProcessor": "videomaker.pisa",
    "PISASwitches": "videomaker.pisa",
    "Preset": "videomaker.presets",
    "TrainingBatch": "videomaker.training",
    "VideoMakerComponents": "videomaker.loading",
    "VideoMakerOutput": "videomaker.pipeline",
    "VideoMakerPipeline": "videomaker.pipeline",
    "girl_loss": "videomaker.girl",
    "install_pisa": "videomaker.pisa",
    "list_presets": "videomaker.presets",
    "load_checkpoint": "videomaker.checkpoint",
    "load_components": "videomaker.loading",
    "load_preset": "videomaker.presets",
    "save_checkpoint": "videomaker.checkpoint",
    "save_preset": "videomaker.loading",
    "select_trainable": "videomaker.trainable",
    "training_step": "videomaker.training",
}

__all__ = [
    "GIRLConfig",
    "NEGATIVE_PROMPT_HUMAN",
    "NEGATIVE_PROMPT_OBJECT",
    "PISAAttnProcessor",
    "PISASwitches",
    "Preset",
    "TrainingBatch",
    "VideoMakerComponents",
    "VideoMakerOutput",
    "VideoMakerPipeline",
    "girl_loss",
    "install_pisa",
    "list_presets",
    "load_checkpoint",
    "load_components",
    "load_preset",
    "save_checkpoint",
    "save_preset",
    "select_trainable",
    "training_step",
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'videomaker' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
