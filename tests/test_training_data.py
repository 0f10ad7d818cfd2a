"""Training draws: a new window and reference per (seed, epoch, sample), shuffled order per epoch."""

import io

import numpy as np
import pyarrow as pa
from PIL import Image

from pipelines.training.data import WINDOW_FRAMES, decode_samples, epoch_part_order


def png(value: int, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def clip_row(sample_id: str, span: int = 24, references: int = 4) -> dict:
    """A clip whose frame k is painted with grey level 4k and whose reference j with 200 + 10j,
    so the decoded pixels say which frames and reference a draw used."""
    indices = [100 + 3 * k for k in range(span)]
    return {
        "sample_id": sample_id,
        "caption": "a person",
        "frames": [png(4 * k) for k in range(span)],
        "frame_indices": indices,
        "reference_png": png(200),
        "reference_pngs": [png(200 + 10 * j) for j in range(references)],
        "reference_frame_index": 7,
        "reference_frame_indices": [7 + j for j in range(references)],
    }


def decode(rows, **kwargs):
    return decode_samples(pa.Table.from_pylist(rows), use_latents=False, failures_dir="/nonexistent", **kwargs)


def test_each_epoch_draws_a_new_window_and_reference_and_decodes_exactly_those(tmp_path):
    row = clip_row("clip-a")
    starts, references = set(), set()
    for epoch in range(12):
        out = decode([row], seed=42, epoch=epoch)
        indices = out["frame_indices"][0]
        start = (int(indices[0]) - 100) // 3
        assert 0 <= start <= 24 - WINDOW_FRAMES
        assert list(indices) == row["frame_indices"][start : start + WINDOW_FRAMES]  # 16 consecutive stored frames
        levels = ((out["frames"][0][:, 0, 0, 0] + 1.0) * 127.5).round().astype(int)
        assert list(levels) == [4 * k for k in range(start, start + WINDOW_FRAMES)]
        which = int(out["reference_frame_index"][0]) - 7
        assert int(out["reference"][0][0, 0, 0]) == 200 + 10 * which
        assert int(out["epoch"][0]) == epoch
        starts.add(start)
        references.add(which)
        again = decode([row], seed=42, epoch=epoch)
        assert list(again["frame_indices"][0]) == list(indices) and again["reference_frame_index"][0] == out["reference_frame_index"][0]
    assert len(starts) > 3 and len(references) > 1  # 12 epochs of one clip: many windows, several references
    other_seed = [list(decode([row], seed=7, epoch=e)["frame_indices"][0]) for e in range(12)]
    assert other_seed != [list(decode([row], seed=42, epoch=e)["frame_indices"][0]) for e in range(12)]


def test_a_clip_of_one_window_and_one_reference_always_draws_the_same():
    row = clip_row("clip-b", span=16, references=1)
    for epoch in range(3):
        out = decode([row], seed=0, epoch=epoch)
        assert list(out["frame_indices"][0]) == row["frame_indices"] and out["reference_frame_index"][0] == 7


def test_outputs_without_the_span_columns_still_train_on_their_one_window():
    row = clip_row("old", span=16, references=1)
    for key in ("frame_indices", "reference_pngs", "reference_frame_indices"):
        del row[key]
    out = decode([row], seed=0, epoch=3)
    assert list(out["frame_indices"][0]) == list(range(16)) and out["frames"].shape == (1, 16, 3, 8, 8)


def test_rows_of_a_part_come_in_a_seeded_order_per_epoch():
    rows = [clip_row(f"clip-{i:02d}", span=16, references=1) for i in range(12)]
    orders = [list(decode(rows, seed=42, epoch=e, shuffle_key="part-0")["sample_id"]) for e in range(3)]
    assert all(sorted(order) == [r["sample_id"] for r in rows] for order in orders)
    assert orders[0] != orders[1] != orders[2]
    assert orders[1] == list(decode(rows, seed=42, epoch=1, shuffle_key="part-0")["sample_id"])
    assert list(decode(rows, seed=42, epoch=1)["sample_id"]) == [r["sample_id"] for r in rows]  # no key: Parquet order
    parts = [epoch_part_order(10, seed=42, epoch=e, shuffle=True) for e in range(3)]
    assert all(sorted(p) == list(range(10)) for p in parts) and parts[0] != parts[1]
    assert epoch_part_order(10, seed=42, epoch=5, shuffle=False) == list(range(10))


def test_a_clip_shorter_than_a_window_is_recorded_and_dropped(tmp_path):
    row = clip_row("short", span=16)
    row["frames"] = row["frames"][:12]
    out = decode_samples(pa.Table.from_pylist([row]), use_latents=False, failures_dir=str(tmp_path / "fail"), seed=0, epoch=0)
    assert len(out["sample_id"]) == 0
    assert "12 frames, expected at least 16" in (tmp_path / "fail" / "short.json").read_text()


def test_latent_rows_draw_the_same_window_as_pixel_rows():
    row = clip_row("clip-c", span=20)
    latents = np.arange(4 * 20 * 2 * 2, dtype=np.float16).reshape(4, 20, 2, 2)
    latent_row = dict(
        row,
        video_latents=latents.astype("<f2").tobytes(),
        latent_shape=[4, 20, 2, 2],
        text_embeddings=np.zeros((77, 4), "<f2").tobytes(),
        text_embedding_shape=[77, 4],
        latent_preset="tiny",
    )
    del latent_row["frames"]
    pixels = decode([row], seed=3, epoch=2)
    out = decode_samples(pa.Table.from_pylist([latent_row]), use_latents=True, failures_dir="/nonexistent", seed=3, epoch=2)
    start = (int(pixels["frame_indices"][0][0]) - 100) // 3
    np.testing.assert_array_equal(out["video_latents"][0], latents[:, start : start + 16].astype(np.float32))
    assert list(out["frame_indices"][0]) == list(pixels["frame_indices"][0])


def test_reference_scale_is_uniform_in_its_range():
    """The affine scale is low + u (high - low) for the augmentation's own draw u (as torchvision's RandomAffine),
    not log-uniform: measured from the size of a black square after the affine."""
    import torch

    from pipelines.training.config import ReferenceAugmentation
    from pipelines.training.data import augment_reference
    from pipelines.training.loop import step_seed

    image = np.zeros((101, 101, 3), np.uint8)
    config = ReferenceAugmentation(flip_p=0.0, rotation_deg=0.0, translate=0.0, scale=(0.6, 1.2))
    errors = []
    for step in range(60):
        seed = step_seed(42, step, 0, 0)
        u = torch.rand(5, generator=torch.Generator().manual_seed(seed))[4].item()  # the draw the scale comes from
        expected = 0.6 + u * 0.6
        out = augment_reference(image, config, torch.Generator().manual_seed(seed))
        measured = float(np.sqrt((out[0] < 0).float().mean().item()))
        if expected < 0.97:  # larger scales fill the whole image
            errors.append(abs(measured - expected))
    assert len(errors) > 20 and np.mean(errors) < 0.01, np.mean(errors)
