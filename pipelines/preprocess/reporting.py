"""Curation reports: a contact sheet of reference images and the MLflow curation run."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.dataset as pa_ds
import pyarrow.fs as pa_fs
from PIL import Image

from metrics.io import decode_image
from pipelines.preprocess.config import PreprocessConfig
from pipelines.preprocess.output import DATA_DIR
from videomaker.storage import resolve


def contact_sheet(output_dir: str, path: Path, *, tile: int = 128, limit: int = 64) -> Path | None:
    """A grid of the dataset's reference images (at most `limit`), so a curator sees them at a glance."""
    fs, root = resolve(output_dir)
    if fs.get_file_info(f"{root}/{DATA_DIR}").type != pa_fs.FileType.Directory:
        return None
    dataset = pa_ds.dataset(f"{root}/{DATA_DIR}", format="parquet", filesystem=fs)
    table = dataset.to_table(columns=["sample_id", "reference_png"])
    table = table.sort_by("sample_id").slice(0, limit)
    if table.num_rows == 0:
        return None
    columns = math.ceil(math.sqrt(table.num_rows))
    rows = math.ceil(table.num_rows / columns)
    sheet = np.full((rows * tile, columns * tile, 3), 255, dtype=np.uint8)
    for i, png in enumerate(table.column("reference_png").to_pylist()):
        image = Image.fromarray(decode_image(png)).resize((tile, tile))
        r, c = divmod(i, columns)
        sheet[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = np.asarray(image)
    Image.fromarray(sheet).save(path)
    return path


def log_curation_run(config: PreprocessConfig, summary: dict, *, artifact_location: str | None = None) -> str:
    """Log the config as params, counts and throughput as metrics, summary and contact sheet as artifacts."""
    import mlflow

    from pipelines.configs import to_yaml
    from pipelines.tracking import JOB_TAG, RUN_ID_TAG, ensure_experiment, flatten_params

    tracking = config.tracking
    experiment_id = ensure_experiment(
        tracking.mlflow_tracking_uri, tracking.mlflow_experiment, output_dir=config.output_dir, artifact_location=artifact_location
    )
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"curation-{config.run_id}") as run:
        mlflow.set_tags({JOB_TAG: "preprocess", RUN_ID_TAG: config.run_id})
        mlflow.log_params(flatten_params(config))
        mlflow.log_text(to_yaml(config), "config.yaml")  # the resolved config, to re-run exactly this curation
        metrics = {
            "sources": summary["sources"],
            "samples": summary["samples"],
            "quarantined": summary["quarantined"],
            "processed_this_run": summary["processed_this_run"],
            "clips_per_s": summary["clips_per_s"],
            "wall_s": summary["wall_s"],
        }
        metrics |= {f"status.{k}": v for k, v in summary["dataset_by_status"].items()}
        metrics |= {f"stage_s.{k}": v for k, v in summary["stage_seconds"].items()}
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "summary.json").write_text(json.dumps(summary, indent=2))
            mlflow.log_artifact(str(Path(tmp) / "summary.json"))
            sheet = contact_sheet(config.output_dir, Path(tmp) / "contact_sheet.png")
            if sheet is not None:
                mlflow.log_artifact(str(sheet))
        return run.info.run_id
