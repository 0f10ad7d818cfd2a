"""Streaming ingest of the preprocess Parquet for training: decode on CPU tasks, augment on workers.

All epochs are one Ray Data stream (`range(epochs * files)`, each item reading one Parquet part
file), so an epoch boundary costs nothing and a data position is simply the batches consumed.
Rows that fail to decode are written to `<run>/decode_failures/` and dropped, never replaced, so
every batch holds only real samples and the failures are counted from that folder.
"""

from __future__ import annotations

import io
import json
import math
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from videomaker import storage

if TYPE_CHECKING:  # decode tasks import this module; keep them free of torch and diffusers
    import torch

    from pipelines.training.config import ReferenceAugmentation

PIXEL_COLUMNS = ["sample_id", "caption", "frames", "reference_png"]
LATENT_COLUMNS = ["sample_id", "caption", "reference_png", "video_latents", "latent_shape", "text_embeddings",
                  "text_embedding_shape", "latent_preset"]


def dataset_path(dataset: str) -> str:
    """The Parquet folder: `<dataset>/data` of a preprocess output (local or a URI), else `dataset` itself.

    Only `data/`: the output's `quarantine/` holds Parquet too, of sources that are not samples.
    """
    data = storage.join(storage.absolute(dataset), "data")
    return data if storage.is_dir(data) else storage.absolute(dataset)


def parquet_parts(path: str):
    """(part files in order, their pyarrow filesystem, total rows) of a Parquet dataset path or URI."""
    dataset = pq.ParquetDataset(path)
    if not dataset.files:
        raise FileNotFoundError(f"`dataset` {path!r} holds no Parquet files; run `videomaker preprocess` first.")
    rows = sum(fragment.metadata.num_rows for fragment in dataset.fragments)
    return list(dataset.files), dataset.filesystem, rows


def has_latents(path: str, preset: str) -> bool:
    """Whether the dataset carries pre-encoded latents made with `preset`'s encoders."""
    dataset = pq.ParquetDataset(path)
    if "video_latents" not in dataset.schema.names:
        return False
    first = dataset.fragments[0].head(1, columns=["video_latents", "latent_preset"]).to_pylist()
    return bool(first) and first[0]["video_latents"] is not None and first[0]["latent_preset"] == preset


def _decode_image(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def decode_samples(batch: pa.Table, *, use_latents: bool, failures_dir: str) -> dict[str, np.ndarray]:
    """Parquet rows -> arrays: frames in [-1, 1] (or latents), the reference as uint8 RGB, captions."""
    out: dict[str, list] = {"sample_id": [], "caption": [], "reference": []}
    out.update({"video_latents": [], "text_embeddings": []} if use_latents else {"frames": []})
    for row in batch.to_pylist():
        try:
            reference = _decode_image(row["reference_png"])
            if use_latents:
                latents = np.frombuffer(row["video_latents"], dtype="<f2").reshape(row["latent_shape"]).astype(np.float32)
                text = np.frombuffer(row["text_embeddings"], dtype="<f2").reshape(row["text_embedding_shape"]).astype(np.float32)
            else:
                frames = np.stack([_decode_image(f) for f in row["frames"]])
                if frames.shape[0] != 16:
                    raise ValueError(f"{frames.shape[0]} frames, expected 16")
        except Exception as error:  # a bad sample is recorded and dropped, the stream goes on
            fs, root = storage.resolve(failures_dir)
            fs.create_dir(root, recursive=True)
            record = {"sample_id": row["sample_id"], "error": f"{type(error).__name__}: {error}"}
            with fs.open_output_stream(f"{root}/{row['sample_id']}.json") as stream:
                stream.write(json.dumps(record).encode())
            continue
        out["sample_id"].append(row["sample_id"])
        out["caption"].append(row["caption"])
        out["reference"].append(reference)
        if use_latents:
            out["video_latents"].append(latents)
            out["text_embeddings"].append(text)
        else:
            out["frames"].append(frames.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)
    return {key: np.array(values, dtype=object) if key in ("sample_id", "caption") else _stack(values)
            for key, values in out.items()}


def _stack(values: list[np.ndarray]) -> np.ndarray:
    return np.stack(values) if values else np.zeros((0,), np.float32)


def read_and_decode_parts(batch: dict, *, files: list[str], filesystem, use_latents: bool, failures_dir: str) -> dict:
    """Stream items (epoch * len(files) + part) -> decoded rows of those part files."""
    columns = LATENT_COLUMNS if use_latents else PIXEL_COLUMNS
    tables = [pq.read_table(files[int(item) % len(files)], filesystem=filesystem, columns=columns) for item in batch["id"]]
    return decode_samples(pa.concat_tables(tables), use_latents=use_latents, failures_dir=failures_dir)


def training_dataset(dataset: str, *, epochs: int, use_latents: bool, failures_dir: str, num_cpus: float = 0.5):
    """The lazy Ray dataset of `epochs` passes over the decoded samples, in Parquet order."""
    import ray

    files, filesystem, _ = parquet_parts(dataset_path(dataset))
    options = {"files": files, "filesystem": filesystem, "use_latents": use_latents, "failures_dir": failures_dir}
    return ray.data.range(epochs * len(files)).map_batches(
        read_and_decode_parts, fn_kwargs=options, batch_size=1, batch_format="numpy", num_cpus=num_cpus)


def count_decode_failures(failures_dir: str) -> int:
    import pyarrow.fs as pafs

    fs, root = storage.resolve(failures_dir)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return 0
    return sum(info.path.endswith(".json") for info in fs.get_file_info(pafs.FileSelector(root)))


def augment_reference(image: np.ndarray, config: ReferenceAugmentation, generator: torch.Generator) -> torch.Tensor:
    """Flip (p) then a random affine with white fill; uint8 (H, W, 3) -> (3, H, W) in [-1, 1]."""
    import torch
    from torchvision.transforms.v2 import functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if config.enabled:
        draws = torch.rand(5, generator=generator).tolist()
        if draws[0] < config.flip_p:
            tensor = F.horizontal_flip(tensor)
        height, width = tensor.shape[1:]
        angle = (2 * draws[1] - 1) * config.rotation_deg
        translate = [round((2 * draws[2] - 1) * config.translate * width), round((2 * draws[3] - 1) * config.translate * height)]
        low, high = config.scale
        scale = math.exp(math.log(low) + draws[4] * (math.log(high) - math.log(low)))
        tensor = F.affine(tensor, angle=angle, translate=translate, scale=scale, shear=[0.0, 0.0], fill=[255, 255, 255])
    return tensor.float() / 127.5 - 1.0
