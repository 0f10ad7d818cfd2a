"""VideoMaker model core: PISA, GIRL, presets, inference and the training step. Imports no Ray."""

from videomaker.checkpoint import load_checkpoint, save_checkpoint
from videomaker.girl import GIRLConfig, girl_loss
from videomaker.loading import VideoMakerComponents, load_components, save_preset
from videomaker.pipeline import NEGATIVE_PROMPT_HUMAN, NEGATIVE_PROMPT_OBJECT, VideoMakerOutput, VideoMakerPipeline
from videomaker.pisa import PISAAttnProcessor, PISASwitches, install_pisa
from videomaker.presets import Preset, list_presets, load_preset
from videomaker.trainable import select_trainable
from videomaker.training import TrainingBatch, training_step

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
