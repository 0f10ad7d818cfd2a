"""A synthetic video corpus made on the spot: real photos cut out and moved over textures, plus broken files.

Why: the preprocessing job, its tests and the demo need videos whose subjects and failures are
known, without downloading anything. Subjects are elliptical cut-outs of scikit-image's bundled
photos (the astronaut's head, the cat, the coffee cup), so face detectors and segmenters see real
image content, and their true masks are exact because we paint them. Every random choice of a
video is drawn into a `RenderPlan` first; `render_clip` is a pure function of that plan.

Example:
    >>> info = make_corpus("/tmp/corpus", num_faces=2, num_objects=2)
    >>> info.manifest_path
    PosixPath('/tmp/corpus/manifest.csv')
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import av
import cv2
import numpy as np

from videomaker.export import write_mp4

# Source id (= file stem) -> the quarantine reason the preprocessing job must report for it.
BROKEN_REASONS = {
    "truncated": "corrupt|decode_error",
    "zero_bytes": "unreadable",
    "not_a_video": "unreadable",
    "one_frame": "too_short",
    "audio_only": "no_video_stream",
    "missing": "missing",
    "too_small": "too_small",
    "two_faces": "several_subjects",
}
# With `degenerate=True`: a video whose detection is degenerate (a box of a few pixels). Whether the
# box falls under `min_object_fraction` depends on the output size; at 128 px from 160x128 it does.
DEGENERATE_REASONS = {"tiny_object": "subject_too_small"}
MANIFEST_COLUMNS = ("path", "caption", "subject_class", "source_id", "expected_reason")
TOO_SMALL_SIZE = (48, 40)
TRUNCATE_FRACTION = 0.4
OBJECT_SUBJECTS = ("cat", "cup")


@dataclass(frozen=True)
class Subject:
    """An elliptical cut-out of one of scikit-image's bundled photos.

    Args:
        image: Name of the `skimage.data` function that loads the photo.
        subject_class: Class word written to the manifest.
        noun: Caption phrase for one subject ("A person").
        center_xy: Ellipse center in the photo's pixels.
        radii_xy: Ellipse half-width and half-height in the photo's pixels.
        height_fractions: Range of the cut-out's height as a share of the frame height.
    """

    image: str
    subject_class: str
    noun: str
    center_xy: tuple[int, int]
    radii_xy: tuple[int, int]
    height_fractions: tuple[float, float]


SUBJECTS = {
    # Hair and face only, no studio backdrop, so the true mask is the head a head-box segmentation should find;
    # the face (about 93 px wide in the photo) stays >= 40 px at 128 px high.
    "face": Subject("astronaut", "person", "A person", (220, 110), (68, 85), (0.62, 0.78)),
    "cat": Subject("chelsea", "cat", "A cat", (215, 150), (205, 145), (0.55, 0.80)),
    "cup": Subject("coffee", "cup", "A cup", (278, 228), (205, 160), (0.55, 0.80)),
}

# Wall patterns that the LBP face cascade does not mistake for faces (noise blobs and rotated checks do).
TEXTURE_PHRASES = {
    "stripes": "a striped wall",
    "tiles": "a tiled wall",
    "arcs": "a wall painted with arcs",
    "gradient": "a softly lit backdrop",
}

# Wall colors kept away from skin, hair, fur and coffee tones, so subjects stand out.
PALETTE = (
    (40, 90, 200),
    (20, 140, 140),
    (60, 160, 70),
    (110, 60, 170),
    (25, 35, 90),
    (70, 40, 120),
    (160, 120, 220),
    (30, 80, 40),
    (150, 170, 230),
    (90, 200, 190),
)


@dataclass(frozen=True)
class RenderPlan:
    """Every random choice of one synthetic video; `render_clip` turns it into frames.

    Positions are fractions of the room the subject has to move in, so it always stays in frame.
    """

    subject: str
    copies: int
    texture: str
    colors: tuple[tuple[int, int, int], tuple[int, int, int]]
    texture_period_px: float
    texture_angle_rad: float
    start_xy: tuple[float, float]
    end_xy: tuple[float, float]
    wobble: float
    wobble_phase: float
    height_fraction_start: float
    height_fraction_end: float
    pan_start: tuple[float, float]
    pan_end: tuple[float, float]

    @property
    def caption(self) -> str:
        noun = "Two people" if self.copies == 2 else SUBJECTS[self.subject].noun
        direction = "right" if self.pan_end[0] > self.pan_start[0] else "left"
        return f"{noun} moving in front of {TEXTURE_PHRASES[self.texture]}, the camera panning {direction}."


@dataclass
class CorpusInfo:
    """What `make_corpus` wrote.

    Args:
        output_dir: The corpus directory.
        manifest_path: `manifest.csv` (path, caption, subject_class, source_id, expected_reason).
        expected_path: `expected.json`, source_id -> expected quarantine reason or null.
        good_videos: Videos that should come through preprocessing.
        broken_videos: Videos that should be quarantined (`missing.mp4` is listed but not written).
        expected: The contents of `expected.json`.
        true_cuts: For multi-shot videos, the frames where each new shot starts (`shots.json`).
    """

    output_dir: Path
    manifest_path: Path
    expected_path: Path
    good_videos: list[Path]
    broken_videos: list[Path]
    expected: dict[str, str | None]
    true_cuts: dict[str, list[int]] = field(default_factory=dict)


def plan_render(subject: str, rng: np.random.Generator, *, copies: int = 1) -> RenderPlan:
    """Draw a video's texture, colors, motion path, scale and camera pan from `rng`."""
    if subject not in SUBJECTS:
        raise ValueError(f"`subject` {subject!r} is unknown. Available: {sorted(SUBJECTS)}.")
    if copies not in (1, 2):
        raise ValueError(f"`copies` must be 1 or 2, got {copies}.")
    color_a, color_b = rng.choice(len(PALETTE), size=2, replace=False)
    low, high = SUBJECTS[subject].height_fractions
    height_start = rng.uniform(low, high)
    height_end = float(np.clip(height_start * rng.uniform(0.88, 1.12), low, high))
    start, end = _sweep(rng, travel=0.4)
    pan_start, pan_end = _sweep(rng, travel=0.5)
    return RenderPlan(
        subject=subject,
        copies=copies,
        texture=str(rng.choice(list(TEXTURE_PHRASES))),
        colors=(PALETTE[color_a], PALETTE[color_b]),
        texture_period_px=float(rng.uniform(10, 28)),
        texture_angle_rad=float(rng.uniform(0, math.pi)),
        start_xy=start,
        end_xy=end,
        wobble=float(rng.uniform(0.0, 0.08)),
        wobble_phase=float(rng.uniform(0, 2 * math.pi)),
        height_fraction_start=float(height_start),
        height_fraction_end=height_end,
        pan_start=pan_start,
        pan_end=pan_end,
    )


def _sweep(rng: np.random.Generator, *, travel: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Start and end (x, y) fractions at least `travel` apart on each axis, in a random direction."""
    near = rng.uniform(0.0, (1 - travel) / 2, size=2)
    far = rng.uniform((1 + travel) / 2, 1.0, size=2)
    forward = rng.random(2) < 0.5
    start, end = np.where(forward, near, far), np.where(forward, far, near)
    return (float(start[0]), float(start[1])), (float(end[0]), float(end[1]))


def render_clip(plan: RenderPlan, *, frames: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 (frames, H, W, 3) and true subject masks bool (frames, H, W) of a plan.

    The background is rendered once with a margin and panned (camera motion); the subject moves
    along a smooth path and scales slowly, always fully in frame.
    """
    width, height = size
    if frames < 1:
        raise ValueError(f"`frames` must be >= 1, got {frames}.")
    if width < 8 or height < 8:
        raise ValueError(f"`size` (width, height) must be at least 8 x 8 pixels, got {size}.")
    margin = max(4, round(0.15 * max(width, height)))
    background = _texture(plan, (width + 2 * margin, height + 2 * margin))
    photo = _cutout(plan.subject)
    # Several subjects share the central square, so all of them survive a square center crop.
    area = width if plan.copies == 1 else min(width, height)
    offset = (width - area) / 2
    slot_width = area / plan.copies
    video = np.empty((frames, height, width, 3), np.uint8)
    masks = np.zeros((frames, height, width), bool)
    for index in range(frames):
        t = index / max(frames - 1, 1)
        pan = [round(2 * margin * (a + (b - a) * t)) for a, b in zip(plan.pan_start, plan.pan_end)]
        video[index] = background[pan[1] : pan[1] + height, pan[0] : pan[0] + width]
        start_h, end_h = plan.height_fraction_start, plan.height_fraction_end
        sprite_h = round(height * (start_h + (end_h - start_h) * t))
        sprite_w = round(sprite_h * photo.shape[1] / photo.shape[0])
        if sprite_w > slot_width:  # wide subjects in narrow frames: fit the width instead
            sprite_w = math.floor(slot_width)
            sprite_h = round(sprite_w * photo.shape[0] / photo.shape[1])
        sprite = cv2.resize(photo, (sprite_w, sprite_h), interpolation=cv2.INTER_AREA)
        shape = _ellipse_mask(sprite_w, sprite_h)
        eased = t * t * (3 - 2 * t)
        wobble = plan.wobble * math.sin(2 * math.pi * t + plan.wobble_phase)
        u = [min(max(a + (b - a) * eased + wobble, 0.0), 1.0) for a, b in zip(plan.start_xy, plan.end_xy)]
        top = round(u[1] * (height - sprite_h))
        for copy in range(plan.copies):
            left = round(offset + copy * slot_width + u[0] * (slot_width - sprite_w))
            region = video[index, top : top + sprite_h, left : left + sprite_w]
            region[shape] = sprite[shape]
            masks[index, top : top + sprite_h, left : left + sprite_w] |= shape
    return video, masks


@cache
def _cutout(subject: str) -> np.ndarray:
    """The bounding box of the subject's ellipse in its photo, uint8 (h, w, 3)."""
    from skimage import data

    spec = SUBJECTS[subject]
    photo = getattr(data, spec.image)()
    (cx, cy), (rx, ry) = spec.center_xy, spec.radii_xy
    top, left = max(cy - ry, 0), max(cx - rx, 0)
    crop = photo[top : cy + ry, left : cx + rx]
    crop.flags.writeable = False
    return crop


def _ellipse_mask(width: int, height: int) -> np.ndarray:
    """Pixels whose centers lie inside the ellipse inscribed in a width x height box."""
    ys = (np.arange(height) + 0.5 - height / 2) / (height / 2)
    xs = (np.arange(width) + 0.5 - width / 2) / (width / 2)
    return xs[None, :] ** 2 + ys[:, None] ** 2 <= 1.0


def _texture(plan: RenderPlan, size: tuple[int, int]) -> np.ndarray:
    """The plan's wall texture, uint8 (H, W, 3): a blend of its two colors by a pattern in [0, 1]."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle, period = plan.texture_angle_rad, plan.texture_period_px
    along = xs * math.cos(angle) + ys * math.sin(angle)
    across = -xs * math.sin(angle) + ys * math.cos(angle)
    if plan.texture == "stripes":
        pattern = np.clip(0.5 + 1.5 * np.sin(2 * np.pi * along / period), 0, 1)
    elif plan.texture == "tiles":  # axis-aligned: rotated checks read as faces to LBP cascades
        pattern = ((np.floor(xs / period) + np.floor(ys / period)) % 2).astype(np.float32)
    elif plan.texture == "arcs":  # rings around a far-away center
        reach = 1.5 * max(width, height)
        radius = np.hypot(xs - width / 2 + reach * math.cos(angle), ys - height / 2 + reach * math.sin(angle))
        pattern = 0.5 + 0.5 * np.sin(2 * np.pi * radius / period)
    else:  # gradient
        pattern = np.clip((along - along.min()) / np.ptp(along) + 0.1 * np.sin(2 * np.pi * across / (4 * period)), 0, 1)
    color_a, color_b = (np.asarray(c, np.float32) for c in plan.colors)
    return (color_a + (color_b - color_a) * pattern[..., None]).round().astype(np.uint8)


def write_audio_only(path: Path, *, seconds: float = 2.0, sample_rate: int = 16000) -> Path:
    """A valid mp4 holding one AAC stream (a 440 Hz sine) and no video."""
    samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(round(seconds * sample_rate)) / sample_rate)).astype(np.float32)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=sample_rate)
        stream.layout = "mono"
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = sample_rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def make_corpus(
    output_dir: str | Path,
    *,
    num_faces: int = 8,
    num_objects: int = 6,
    broken: bool = True,
    frames: int = 48,
    size: tuple[int, int] = (160, 128),
    fps: int = 8,
    seed: int = 0,
    multi_shot: int = 0,
    degenerate: bool = False,
    on_row: Callable[[str], None] | None = None,
) -> CorpusInfo:
    """Write good videos with their true masks, optionally broken files, `manifest.csv` and `expected.json`.

    Args:
        output_dir: Created if needed; existing files of the same names are overwritten.
        num_faces: Videos of the astronaut's head (subject_class "person").
        num_objects: Videos alternating the cat and the coffee cup.
        broken: Also write the files of `BROKEN_REASONS` (and a manifest row for `missing.mp4`).
        frames: Frames per good video; keep it at least the preprocessing job's `num_frames` (16).
        size: (width, height) of the good videos; both even.
        fps: Frame rate of every video.
        seed: Everything rendered follows from it; the same seed renders the same frames.
        degenerate: Also write `DEGENERATE_REASONS`' video (a dot on a flat wall).
        multi_shot: Videos `shots_NNN` of two or three shots (`frames` frames each) of the astronaut's
            head in different scenes, hard cuts between them; `CorpusInfo.true_cuts` (and
            `shots.json`) give the frame numbers where each new shot starts.
        on_row: Called with each source id once its files are written (for a progress display).

    Returns:
        `CorpusInfo` with the manifest path and the good and broken videos.
    """
    width, height = size
    if num_faces < 0 or num_objects < 0:
        raise ValueError(f"`num_faces` and `num_objects` must be >= 0, got {num_faces} and {num_objects}.")
    if frames < 2:
        raise ValueError(f"`frames` must be >= 2 so a good video is longer than the one_frame file, got {frames}.")
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise ValueError(f"`size` (width, height) must be even and at least 64 x 64 pixels, got {size}.")
    if fps < 1:
        raise ValueError(f"`fps` must be >= 1, got {fps}.")
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    corpus = _CorpusWriter(output_dir, frames=frames, size=size, fps=fps, seed=seed, on_row=on_row)
    for index in range(num_faces):
        corpus.add_clip(f"face_{index:03d}", plan_render("face", corpus.rng(0, index)))
    for index in range(num_objects):
        subject = OBJECT_SUBJECTS[index % len(OBJECT_SUBJECTS)]
        corpus.add_clip(f"{subject}_{index // len(OBJECT_SUBJECTS):03d}", plan_render(subject, corpus.rng(1, index)))
    for index in range(multi_shot):
        rng = corpus.rng(3, index)
        plans = [plan_render("face", rng) for _ in range(2 + index % 2)]
        corpus.add_shots(f"shots_{index:03d}", plans)
    if broken:
        _add_broken(corpus)
    if degenerate:
        _add_tiny_object(corpus)
    return corpus.finish()


@dataclass
class _CorpusWriter:
    """Writes clips (video + masks) and manifest rows into one directory, then the manifest files."""

    output_dir: Path
    frames: int
    size: tuple[int, int]
    fps: int
    seed: int
    on_row: Callable[[str], None] | None
    rows: list[dict] = field(default_factory=list)
    cuts: dict[str, list[int]] = field(default_factory=dict)

    def rng(self, *stream: int) -> np.random.Generator:
        """An independent generator per video, so adding videos of one kind leaves the others unchanged."""
        return np.random.default_rng([self.seed, *stream])

    def add_clip(self, source_id: str, plan: RenderPlan, *, frames: int | None = None, size: tuple[int, int] | None = None) -> Path:
        video, masks = render_clip(plan, frames=frames or self.frames, size=size or self.size)
        path = write_mp4(video, self.output_dir / f"{source_id}.mp4", fps=self.fps)
        np.savez_compressed(self.output_dir / f"{source_id}.masks.npz", masks=masks)
        self.add_row(source_id, path, plan.caption, SUBJECTS[plan.subject].subject_class)
        return path

    def add_shots(self, source_id: str, plans: list[RenderPlan]) -> Path:
        """One video of several shots, each rendered from its own plan, cut hard from one to the next."""
        shots = [render_clip(plan, frames=self.frames, size=self.size) for plan in plans]
        video = np.concatenate([frames for frames, _ in shots])
        masks = np.concatenate([m for _, m in shots])
        path = write_mp4(video, self.output_dir / f"{source_id}.mp4", fps=self.fps)
        np.savez_compressed(self.output_dir / f"{source_id}.masks.npz", masks=masks)
        self.cuts[source_id] = [self.frames * k for k in range(1, len(plans))]
        self.add_row(source_id, path, plans[0].caption, SUBJECTS[plans[0].subject].subject_class)
        return path

    def add_row(self, source_id: str, path: Path, caption: str, subject_class: str) -> None:
        self.rows.append(
            {
                "path": str(path),
                "caption": caption,
                "subject_class": subject_class,
                "source_id": source_id,
                "expected_reason": {**BROKEN_REASONS, **DEGENERATE_REASONS}.get(source_id, ""),
            }
        )
        if self.on_row is not None:
            self.on_row(source_id)

    def finish(self) -> CorpusInfo:
        manifest_path = self.output_dir / "manifest.csv"
        with manifest_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)
        expected = {row["source_id"]: row["expected_reason"] or None for row in self.rows}
        expected_path = self.output_dir / "expected.json"
        expected_path.write_text(json.dumps(expected, indent=2) + "\n")
        if self.cuts:
            (self.output_dir / "shots.json").write_text(json.dumps(self.cuts, indent=2) + "\n")
        return CorpusInfo(
            output_dir=self.output_dir,
            manifest_path=manifest_path,
            expected_path=expected_path,
            good_videos=[Path(row["path"]) for row in self.rows if not row["expected_reason"]],
            broken_videos=[Path(row["path"]) for row in self.rows if row["expected_reason"]],
            expected=expected,
            true_cuts=dict(self.cuts),
        )


def _add_broken(corpus: _CorpusWriter) -> None:
    """The files of `BROKEN_REASONS`, each failing in exactly one way."""
    truncated = corpus.add_clip("truncated", plan_render("cat", corpus.rng(2, 0)))
    content = truncated.read_bytes()
    truncated.write_bytes(content[: round(len(content) * TRUNCATE_FRACTION)])

    zero = corpus.output_dir / "zero_bytes.mp4"
    zero.write_bytes(b"")
    corpus.add_row("zero_bytes", zero, "An empty file.", "person")

    not_video = corpus.output_dir / "not_a_video.mp4"
    not_video.write_bytes(b"This is a text file named like a video; no decoder can read it.\n" * 40)
    corpus.add_row("not_a_video", not_video, "A text file with a video's name.", "person")

    corpus.add_clip("one_frame", plan_render("face", corpus.rng(2, 1)), frames=1)

    audio = write_audio_only(corpus.output_dir / "audio_only.mp4")
    corpus.add_row("audio_only", audio, "A sine tone without any picture.", "person")

    corpus.add_row("missing", corpus.output_dir / "missing.mp4", "A video whose file was never written.", "person")
    corpus.add_clip("too_small", plan_render("cup", corpus.rng(2, 2)), size=TOO_SMALL_SIZE)
    corpus.add_clip("two_faces", plan_render("face", corpus.rng(2, 3), copies=2))


def _add_tiny_object(corpus: _CorpusWriter) -> None:
    """A degenerate detection: on a flat frame the only foreground is a 3-pixel dot, so the object
    detector returns a box of a few pixels, which the segmenter cannot work with."""
    width, height = corpus.size
    video = np.full((corpus.frames, height, width, 3), 190, np.uint8)
    for t in range(corpus.frames):
        x, y = width // 2 + t % 3, height // 2
        video[t, y : y + 3, x : x + 3] = (200, 30, 30)
    path = write_mp4(video, corpus.output_dir / "tiny_object.mp4", fps=corpus.fps)
    corpus.add_row("tiny_object", path, "A dot on a grey wall.", "cup")
