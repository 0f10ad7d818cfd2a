"""The synthetic corpus: real decodable videos, exact masks, findable faces, and broken files that fail as labelled."""

import argparse
import csv
import json
import time

import av
import numpy as np
import pytest
from skimage import data
from skimage.feature import Cascade

from pipelines.preprocess.synthetic import (
    BROKEN_REASONS,
    MANIFEST_COLUMNS,
    SUBJECTS,
    TOO_SMALL_SIZE,
    make_corpus,
    plan_render,
    render_clip,
)

SIZE = (160, 128)
FRAMES = 48
DETECTION_EVERY = 3  # frames; keeps the cascade part of the tests to a few seconds


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    started = time.perf_counter()
    info = make_corpus(tmp_path_factory.mktemp("corpus"))
    return info, time.perf_counter() - started


@pytest.fixture(scope="module")
def cascade():
    return Cascade(data.lbp_frontal_face_cascade_filename())


def decode(path):
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def detect_faces(cascade, frame):
    found = cascade.detect_multi_scale(img=frame, scale_factor=1.2, step_ratio=1, min_size=(24, 24), max_size=(128, 128))
    return [(d["c"], d["r"], d["width"], d["height"]) for d in found]


def overlap(a, b):
    """Intersection over the smaller box, for (x, y, w, h) boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(width, 0) * max(height, 0) / min(a[2] * a[3], b[2] * b[3])


def distinct(boxes):
    """Boxes left after merging those that mostly overlap (the cascade reports one face several times)."""
    kept = []
    for box in boxes:
        if all(overlap(box, other) < 0.5 for other in kept):
            kept.append(box)
    return kept


def mask_box(mask):
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1


@pytest.fixture(scope="module")
def photo_face(cascade):
    """The astronaut's face box found by the cascade in the original photo, relative to the face cut-out (fractions)."""
    x, y, w, h = max(detect_faces(cascade, data.astronaut()), key=lambda box: box[2])  # the helmet is a small false hit
    (cx, cy), (rx, ry) = SUBJECTS["face"].center_xy, SUBJECTS["face"].radii_xy
    return (x - (cx - rx)) / (2 * rx), (y - (cy - ry)) / (2 * ry), w / (2 * rx), h / (2 * ry)


def test_default_corpus_is_fast_and_complete(corpus):
    info, seconds = corpus
    assert seconds < 30
    assert len(info.good_videos) == 8 + 6
    assert set(info.expected) == {p.stem for p in info.good_videos} | set(BROKEN_REASONS)
    assert {p.stem for p in info.broken_videos} == set(BROKEN_REASONS)


def test_manifest_and_expected_json(corpus):
    info, _ = corpus
    with info.manifest_path.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == MANIFEST_COLUMNS
    assert json.loads(info.expected_path.read_text()) == {r["source_id"]: r["expected_reason"] or None for r in rows}
    for row in rows:
        assert row["path"].startswith("/") and row["caption"].endswith(".")
        assert row["subject_class"] in {"person", "cat", "cup"}
        assert row["expected_reason"] == BROKEN_REASONS.get(row["source_id"], "")
    classes = [r["subject_class"] for r in rows if not r["expected_reason"]]
    assert classes.count("person") == 8 and classes.count("cat") == 3 and classes.count("cup") == 3


def test_good_videos_decode_with_exact_masks(corpus):
    info, _ = corpus
    for path in info.good_videos:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264" and stream.average_rate == 8
        frames = decode(path)
        assert frames.shape == (FRAMES, SIZE[1], SIZE[0], 3)
        masks = np.load(path.with_name(f"{path.stem}.masks.npz"))["masks"]
        assert masks.shape == (FRAMES, SIZE[1], SIZE[0]) and masks.dtype == bool
        for mask in masks:
            assert 0.15 < mask.mean() < 0.8
            x, y, w, h = mask_box(mask)
            # A whole ellipse (not cut by the frame edge) covers pi/4 of its bounding box.
            assert mask.sum() == pytest.approx(np.pi / 4 * w * h, rel=0.05)


def test_cascade_finds_the_face_where_the_mask_puts_it(corpus, cascade, photo_face):
    info, _ = corpus
    faces = [p for p in info.good_videos if p.stem.startswith("face_")]
    assert len(faces) == 8
    for path in faces:
        frames = decode(path)[::DETECTION_EVERY]
        masks = np.load(path.with_name(f"{path.stem}.masks.npz"))["masks"][::DETECTION_EVERY]
        hits = 0
        for frame, mask in zip(frames, masks):
            x, y, w, h = mask_box(mask)
            expected = (x + photo_face[0] * w, y + photo_face[1] * h, photo_face[2] * w, photo_face[3] * h)
            found = distinct(detect_faces(cascade, frame))
            hits += len(found) == 1 and overlap(found[0], expected) > 0.6 and found[0][2] >= 40
        assert hits >= 0.8 * len(frames), f"{path.name}: face found in {hits} of {len(frames)} frames"


def test_two_faces_are_found_apart(corpus, cascade):
    info, _ = corpus
    path = info.output_dir / "two_faces.mp4"
    masks = np.load(info.output_dir / "two_faces.masks.npz")["masks"]
    frames = decode(path)
    assert frames.shape == (FRAMES, SIZE[1], SIZE[0], 3)
    hits = 0
    for frame, mask in zip(frames[::DETECTION_EVERY], masks[::DETECTION_EVERY]):
        found = distinct(detect_faces(cascade, frame))
        hits += len(found) == 2 and all(mask[y + h // 2, x + w // 2] for x, y, w, h in found)
    assert hits >= 0.8 * len(frames[::DETECTION_EVERY])


def test_broken_files_fail_as_labelled(corpus):
    info, _ = corpus
    out = info.output_dir
    for name in ("zero_bytes", "not_a_video"):
        with pytest.raises(av.error.FFmpegError):
            av.open(str(out / f"{name}.mp4"))
    with av.open(str(out / "audio_only.mp4")) as container:
        assert not container.streams.video and container.streams.audio
    assert len(decode(out / "one_frame.mp4")) == 1
    assert not (out / "missing.mp4").exists()
    assert decode(out / "too_small.mp4").shape[1:3] == (TOO_SMALL_SIZE[1], TOO_SMALL_SIZE[0])

    decoded = 0
    with av.open(str(out / "truncated.mp4")) as container:  # the index survives, the frames do not
        assert container.streams.video[0].frames == FRAMES
        with pytest.raises(av.error.FFmpegError):
            for _ in container.decode(video=0):
                decoded += 1
    assert decoded < FRAMES


def test_same_seed_renders_the_same_frames():
    def render(seed):
        return render_clip(plan_render("cup", np.random.default_rng(seed)), frames=6, size=SIZE)

    first, again, other = render(3), render(3), render(4)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_subject_stays_whole_in_narrow_frames():
    frames, masks = render_clip(plan_render("cat", np.random.default_rng(0)), frames=4, size=(64, 128))
    assert frames.shape == (4, 128, 64, 3)
    for mask in masks:
        x, y, w, h = mask_box(mask)
        assert mask.sum() == pytest.approx(np.pi / 4 * w * h, rel=0.05)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"num_faces": -1}, "num_faces"),
        ({"frames": 1}, "frames"),
        ({"size": (161, 128)}, "size"),
        ({"size": (32, 32)}, "size"),
        ({"fps": 0}, "fps"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        make_corpus(tmp_path, **kwargs)


def test_unknown_subject_lists_the_choices():
    with pytest.raises(ValueError, match="Available: \\['cat', 'cup', 'face'\\]"):
        plan_render("dog", np.random.default_rng(0))


def test_job_writes_a_small_corpus_and_prints_the_manifest(tmp_path, capsys):
    from jobs import synth_corpus

    parser = argparse.ArgumentParser()
    synth_corpus.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["synth-corpus", "--output-dir", str(tmp_path), "--faces", "1", "--objects", "1", "--no-broken", "--frames", "4"]
    )
    assert args.run(args) == 0
    assert capsys.readouterr().out.strip().endswith(str(tmp_path / "manifest.csv"))
    assert json.loads((tmp_path / "expected.json").read_text()) == {"face_000": None, "cat_000": None}
    assert len(decode(tmp_path / "face_000.mp4")) == 4
