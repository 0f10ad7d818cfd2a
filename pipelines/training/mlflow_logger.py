"""MLflow for a training run, from rank 0: the resolved config once, metrics per step, checkpoint
locations as tags, validation videos as artifacts. The training loop only calls these methods."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from pipelines.configs import to_yaml
from pipelines.tracking import (
    CURATION_RUN_TAG,
    JOB_TAG,
    LATEST_CHECKPOINT_TAG,
    RUN_NAME_TAG,
    ensure_experiment,
    file_dataset,
    flatten_params,
)
from pipelines.training.config import TrainConfig
from pipelines.training.state import CONFIG_FILE, Progress

if TYPE_CHECKING:  # diffusers loads with the pipeline, only when videos are made
    from videomaker.loading import VideoMakerComponents


class TrainingRunLogger:
    """One MLflow run per training run; a resumed run (its id in `progress`) continues it.

    A new run gets the config as params (dotted keys, `pipelines.tracking.flatten_params`), the
    dataset facts as `data.*` params and the resolved config as the `config.yaml` artifact; with
    `lineage` (`pipelines.training.data.dataset_lineage`) the dataset as its input and the preprocess
    run that made it as a tag.
    """

    def __init__(self, config: TrainConfig, progress: Progress, data: dict | None = None, lineage: dict | None = None) -> None:
        import mlflow

        self.mlflow = mlflow
        self.config = config
        tracking = config.tracking
        experiment_id = ensure_experiment(tracking.mlflow_tracking_uri, tracking.mlflow_experiment, output_dir=config.storage_path)
        if progress.mlflow_run_id:
            self.run = mlflow.start_run(run_id=progress.mlflow_run_id)
        else:
            self.run = mlflow.start_run(experiment_id=experiment_id, run_name=config.run_name)
            mlflow.set_tags({JOB_TAG: "train", RUN_NAME_TAG: config.run_name})
            params = flatten_params(config)
            if data:
                params |= flatten_params(data, "data")
            mlflow.log_params(params)
            if lineage:
                dataset = file_dataset(lineage["location"], name="preprocess-output", digest=lineage["digest"])
                mlflow.log_input(dataset, context="training", tags={"rows": str(lineage["rows"])})
                if lineage["curation_run_id"]:
                    mlflow.set_tag(CURATION_RUN_TAG, lineage["curation_run_id"])
            progress.mlflow_run_id = self.run.info.run_id
        # Every attempt logs the config it runs with: a resume may change keys such as max_steps.
        mlflow.log_text(to_yaml(config), CONFIG_FILE)

    def metrics(self, values: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(values, step=step)

    def checkpoint(self, location: str, step: int) -> None:
        self.mlflow.set_tags({LATEST_CHECKPOINT_TAG: location, f"checkpoint.step_{step:08d}": location})

    def register(self, directory: Path, name: str, step: int, *, final: bool) -> None:
        """A version of `tracking.registered_model` from the checkpoint in `directory`, if the config asks for this one."""
        tracking = self.config.tracking
        if tracking.registered_model is None or (tracking.register_checkpoints == "final" and not final):
            return
        from dataclasses import asdict

        from pipelines.registry import register_checkpoint

        version = register_checkpoint(
            tracking.mlflow_tracking_uri,
            tracking.registered_model,
            directory=directory,
            run_id=self.run.info.run_id,
            step=step,
            preset=self.config.model.preset,
            switches=asdict(self.config.model.switches),
            run_name=self.config.run_name,
            checkpoint_name=name,
        )
        self.mlflow.set_tag(f"registered.step_{step:08d}", version.uri)

    def validation_videos(self, components: VideoMakerComponents, config: TrainConfig, step: int) -> None:
        """Generate the fixed validation prompts from the fixed reference and log mp4 + GIF."""
        from videomaker.export import write_gif, write_mp4
        from videomaker.pipeline import VideoMakerPipeline
        from videomaker.references import load_reference

        validation = config.validation
        reference = load_reference(validation.reference, argument="validation.reference")
        prompts = list(validation.prompts)
        components.unet.eval()
        try:
            with torch.no_grad():
                output = VideoMakerPipeline(components, switches=config.model.switches)(
                    [reference] * len(prompts),
                    prompts,
                    seeds=[config.seed] * len(prompts),
                    num_inference_steps=validation.inference_steps,
                    progress=False,
                )
        finally:
            components.unet.train()
        with tempfile.TemporaryDirectory() as tmp:
            for index, frames in enumerate(output.frames):
                write_mp4(frames, Path(tmp) / f"{index:02d}.mp4")
                write_gif(frames, Path(tmp) / f"{index:02d}.gif")
            self.mlflow.log_artifacts(tmp, artifact_path=f"validation/step_{step:08d}")

    def close(self, status: str = "FINISHED") -> None:
        self.mlflow.end_run(status=status)
