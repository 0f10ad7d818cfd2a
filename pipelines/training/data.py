"""Streaming ingest of the preprocess Parquet for training: decode on CPU tasks, augment on workers.

All epochs are one Ray Data stream (`range(epochs * files)`, each item reading one Parquet part
file), so an epoch boundary costs nothing and a data position is simply the batches consumed.

Every draw of a clip picks a new 16-frame window from the clip's stored span and one of its
stored references, seeded by (seed, epoch, sample id), as the authors' training drew a new window
and reference each time. Each epoch visits the part files in a seeded order and the rows of a part
in a seeded order: a two-level shuffle that needs no random access across the whole dataset.
Rows that fail to decode are written to `<run>/decode_failures/` and dropped, never replaced, so
every batch holds only real samples and the failures are counted from that folder.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.fs as pa_fs
import pyarrow.parquet as pq

from metrics.io import decode_image
from videomaker import storage

if TYPE_CHECKING:  # decode tasks import this module; keep them free of torch and diffusers
    import ray.data
    import torch

    from pipelines.training.config import ReferenceAugmentation

WINDOW_FRAMES = 16
PIXEL_COLUMNS = ["sample_id", "caption", "frames", "reference_png"]
LATENT_COLUMNS = [
    "sample_id",
    "caption",
    "reference_png",
    "video_latents",
    "latent_shape",
    "text_embeddings",
    "text_embedding_shape",
    "latent_preset",
]
# Read when the dataset has them (older outputs kept one window and one reference per clip).
DRAW_COLUMNS = ["frame_indices", "reference_pngs", "reference_frame_index", "reference_frame_indices"]


def dataset_path(dataset: str) -> str:
    """The Parquet folder: `<dataset>/data` of a preprocess output (local or a URI), else `dataset` itself.

    Only `data/`: the output's `quarantine/` holds Parquet too, of sources that are not samples.
    """
    data = storage.join(storage.absolute(dataset), "data")
    return data if storage.is_dir(data) else storage.absolute(dataset)


def parquet_parts(path: str) -> tuple[list[str], pa_fs.FileSystem, int]:
    """(part files in order, their pyarrow filesystem, total rows) of a Parquet dataset path or URI."""
    dataset = pq.ParquetDataset(path)
    if not dataset.files:
        raise FileNotFoundError(f"`dataset` {path!r} holds no Parquet files; run `videomaker preprocess` first.")
    rows = sum(fragment.metadata.num_rows for fragment in dataset.fragments)
    return list(dataset.files), dataset.filesystem, rows


def dataset_lineage(dataset: str, path: str, parts: tuple[list[str], pa_fs.FileSystem, int]) -> dict:
    """Where the training data came from, for MLflow: its location, rows, a digest of its part files
    (names and sizes; nothing is read) and the preprocess run that logged it (from `summary.json`).

    `parts` is what `parquet_parts(path)` returned, so the footers are not read twice.
    """
    from pipelines.tracking import content_digest

    files, filesystem, rows = parts
    listing = [(storage.name(info.path), info.size) for info in filesystem.get_file_info(files)]
    summary = storage.join(storage.absolute(dataset), "summary.json")
    curation_run = json.loads(storage.read_text(summary)).get("mlflow_run_id") if storage.exists(summary) else None
    return {"location": path, "rows": rows, "digest": content_digest(json.dumps(listing).encode()), "curation_run_id": curation_run}


def has_latents(path: str, preset: str) -> bool:
    """Whether the dataset carries pre-encoded latents made with `preset`'s encoders."""
    dataset = pq.ParquetDataset(path)
    if "video_latents" not in dataset.schema.names:
        return False
    first = dataset.fragments[0].head(1, columns=["video_latents", "latent_preset"]).to_pylist()
    return bool(first) and first[0]["video_latents"] is not None and first[0]["latent_preset"] == preset


def dataset_facts(path: str) -> dict:
    """What the first row says about how the dataset was made: reference mode, frames and references kept."""
    dataset = pq.ParquetDataset(path)
    names = set(dataset.schema.names)
    columns = [c for c in ("reference_mode", "frame_indices", "reference_pngs", "resize_policy", "stride") if c in names]
    rows = dataset.fragments[0].head(1, columns=columns).to_pylist()
    row = rows[0] if rows else {}
    return {
        "reference_mode": row.get("reference_mode") or "shp",  # outputs before the mode existed were SHP
        "clip_frames": len(row["frame_indices"]) if row.get("frame_indices") else None,
        "references_per_clip": len(row["reference_pngs"]) if row.get("reference_pngs") else 1,
        "resize_policy": row.get("resize_policy"),
        "stride": row.get("stride"),
    }


def draw_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    """The generator of one draw: the same (seed, epoch, key) always draws the same."""
    from pipelines.preprocess.sampling import rng_for

    return rng_for(f"train/{epoch}/{key}", seed)


def draw_clip(row: dict, *, seed: int, epoch: int) -> tuple[int, int]:
    """(window start within the clip's frames, index of the reference) of this epoch's draw of `row`."""
    count = row["latent_shape"][1] if row.get("video_latents") is not None else len(row["frames"])
    if count < WINDOW_FRAMES:
        raise ValueError(f"{count} frames, expected at least {WINDOW_FRAMES}")
    references = row.get("reference_pngs") or [row["reference_png"]]
    rng = draw_rng(seed, epoch, row["sample_id"])
    return int(rng.integers(0, count - WINDOW_FRAMES + 1)), int(rng.integers(0, len(references)))


def decode_samples(
    batch: pa.Table, *, use_latents: bool, failures_dir: str, seed: int = 0, epoch: int = 0, shuffle_key: str | None = None
) -> dict[str, np.ndarray]:
    """Parquet rows -> arrays: this draw's 16 frames in [-1, 1] (or latents), its reference as uint8 RGB,
    captions, and what was drawn (`frame_indices`, `reference_frame_index`, `epoch`).

    With `shuffle_key`, the rows come in an order seeded by (seed, epoch, shuffle_key).
    """
    out: dict[str, list] = {"sample_id": [], "caption": [], "reference": [], "frame_indices": [], "reference_frame_index": [], "epoch": []}
    out.update({"video_latents": [], "text_embeddings": []} if use_latents else {"frames": []})
    rows = batch.to_pylist()
    if shuffle_key is not None:
        rows = [rows[i] for i in draw_rng(seed, epoch, shuffle_key).permutation(len(rows))]
    for row in rows:
        try:
            start, which = draw_clip(row, seed=seed, epoch=epoch)
            window = slice(start, start + WINDOW_FRAMES)
            references = row.get("reference_pngs") or [row["reference_png"]]
            reference = decode_image(references[which])
            if use_latents:
                latents = np.frombuffer(row["video_latents"], dtype="<f2").reshape(row["latent_shape"])[:, window].astype(np.float32)
                text = np.frombuffer(row["text_embeddings"], dtype="<f2").reshape(row["text_embedding_shape"]).astype(np.float32)
            else:
                frames = np.stack([decode_image(f) for f in row["frames"][window]])
        except Exception as error:  # a bad sample is recorded and dropped, the stream goes on
            fs, root = storage.resolve(failures_dir)
            fs.create_dir(root, recursive=True)
            record = {"sample_id": row["sample_id"], "error": f"{type(error).__name__}: {error}"}
            with fs.open_output_stream(f"{root}/{row['sample_id']}.json") as stream:
                stream.write(json.dumps(record).encode())
            continue
        indices = row.get("frame_indices") or list(range(len(row["frames"]) if row.get("frames") else row["latent_shape"][1]))
        reference_indices = row.get("reference_frame_indices") or [row.get("reference_frame_index", -1)]
        out["sample_id"].append(row["sample_id"])
        out["caption"].append(row["caption"])
        out["reference"].append(reference)
        out["frame_indices"].append(np.asarray(indices[window], dtype=np.int64))
        out["reference_frame_index"].append(np.int64(reference_indices[which] if reference_indices[which] is not None else -1))
        out["epoch"].append(np.int64(epoch))
        if use_latents:
            out["video_latents"].append(latents)
            out["text_embeddings"].append(text)
        else:
            out["frames"].append(frames.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)
    return {key: np.array(values, dtype=object) if key in ("sample_id", "caption") else _stack(values) for key, values in out.items()}


def _stack(values: list[np.ndarray]) -> np.ndarray:
    return np.stack(values) if values else np.zeros((0,), np.float32)


def epoch_part_order(files: int, *, seed: int, epoch: int, shuffle: bool) -> list[int]:
    """The part files of `epoch` in the order training visits them."""
    if not shuffle:
        return list(range(files))
    return [int(i) for i in draw_rng(seed, epoch, "parts").permutation(files)]


def read_and_decode_parts(
    batch: dict,
    *,
    files: list[str],
    filesystem: pa_fs.FileSystem,
    use_latents: bool,
    failures_dir: str,
    seed: int = 0,
    shuffle: bool = True,
) -> dict:
    """Stream items (epoch * len(files) + position) -> decoded rows of that epoch's part at that position."""
    columns = LATENT_COLUMNS if use_latents else PIXEL_COLUMNS
    decoded = []
    for item in batch["id"]:
        epoch, position = divmod(int(item), len(files))
        path = files[epoch_part_order(len(files), seed=seed, epoch=epoch, shuffle=shuffle)[position]]
        available = set(pq.read_schema(path, filesystem=filesystem).names)
        table = pq.read_table(path, filesystem=filesystem, columns=columns + [c for c in DRAW_COLUMNS if c in available])
        # Keyed by the part's file name, not its path: a copied or remounted dataset shuffles the same.
        decoded.append(
            decode_samples(
                table,
                use_latents=use_latents,
                failures_dir=failures_dir,
                seed=seed,
                epoch=epoch,
                shuffle_key=path.rsplit("/", 1)[-1] if shuffle else None,
            )
        )
    return decoded[0] if len(decoded) == 1 else {key: np.concatenate([d[key] for d in decoded]) for key in decoded[0]}


def training_dataset(
    dataset: str, *, epochs: int, use_latents: bool, failures_dir: str, num_cpus: float = 0.5, seed: int = 0, shuffle: bool = True
) -> ray.data.Dataset:
    """The lazy Ray dataset of `epochs` passes over the decoded samples (shuffled per epoch when `shuffle`)."""
    import ray

    files, filesystem, _ = parquet_parts(dataset_path(dataset))
    options = {
        "files": files,
        "filesystem": filesystem,
        "use_latents": use_latents,
        "failures_dir": failures_dir,
        "seed": seed,
        "shuffle": shuffle,
    }
    return ray.data.range(epochs * len(files)).map_batches(
        read_and_decode_parts, fn_kwargs=options, batch_size=1, batch_format="numpy", num_cpus=num_cpus
    )


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
        scale = low + draws[4] * (high - low)  # uniform, as the authors' RandomAffine draws it
        tensor = F.affine(tensor, angle=angle, translate=translate, scale=scale, shear=[0.0, 0.0], fill=[255, 255, 255])
    return tensor.float() / 127.5 - 1.0
