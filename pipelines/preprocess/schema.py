"""The Parquet schemas the preprocessing job writes, and the reasons a source is quarantined.

Encodings, and why:
- `frames`: the clip's span of JPEG images (quality 95): `clips.span_frames` at its stride, of which
  training draws a 16-frame window at every draw. Source videos are already lossy, training re-augments
  them, and JPEG is ~8x smaller than PNG at 512x512, which matters at tens of thousands of clips;
  any reader (PIL, torchvision, browsers) decodes them.
- `reference_png`, `mask_png`: lossless PNG, because the white background must stay exactly 255
  and masks exactly binary; both are small (flat white areas, 1-bit masks compress well).
- latents: little-endian float16 bytes plus their shape, so training reads them without a VAE.
"""

from __future__ import annotations

import pyarrow as pa

# Reason codes of the quarantine dataset: (stage that detects it, retryable by default).
REASONS = {
    "missing": ("probe", True),
    "unreadable": ("probe", False),
    "corrupt": ("probe", False),
    "no_video_stream": ("probe", False),
    "unsupported_codec": ("probe", False),
    "too_short": ("validate", False),
    "too_small": ("validate", False),
    "decode_error": ("decode", False),
    "no_subject": ("detect", False),
    "several_subjects": ("detect", False),
    "subject_too_small": ("detect", False),
    "empty_mask": ("segment", False),
    "internal_error": ("any", True),
}


def _field(name, type_, doc, nullable=True):
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


DATASET_SCHEMA = pa.schema(
    [
        _field("sample_id", pa.string(), "Stable id: hash of the source id and the clip number.", False),
        _field("source_id", pa.string(), "Manifest source_id, else the path relative to the manifest or input folder."),
        _field("clip_index", pa.int32(), "Clip number within the source, 0-based in time order."),
        _field("source_uri", pa.string(), "Where the video was read from.", False),
        _field("content_sha256", pa.string(), "SHA-256 of the source file's bytes."),
        _field("codec", pa.string(), "Video codec of the source."),
        _field("source_fps", pa.float64(), "Frame rate of the source."),
        _field("source_num_frames", pa.int32(), "Frames in the source video."),
        _field("source_width", pa.int32(), "Source width in pixels."),
        _field("source_height", pa.int32(), "Source height in pixels."),
        _field("source_duration_s", pa.float64(), "Source duration in seconds."),
        _field("source_num_shots", pa.int32(), "Shots the shot detector found in the source (1 when it is off)."),
        _field("shot_index", pa.int32(), "Shot of the source this clip and its reference come from."),
        _field("shot_start_frame", pa.int32(), "First source frame of that shot."),
        _field("shot_end_frame", pa.int32(), "One past the shot's last source frame."),
        _field("frame_indices", pa.list_(pa.int32()), "Source frame numbers of the clip's frames (16 or more, at the stride)."),
        _field("stride", pa.int32(), "Stride between clip frames (8, or n_frames // 16 for short videos)."),
        _field("reference_candidates", pa.list_(pa.int32()), "Candidate reference frames, in the seeded order tried."),
        _field("reference_frame_index", pa.int32(), "Source frame the primary reference image was made from."),
        _field("reference_frame_indices", pa.list_(pa.int32()), "Source frames of every kept reference, primary first."),
        _field("reference_away_from_clip", pa.bool_(), "True if the reference frame lies outside the clip's frames."),
        _field("width", pa.int32(), "Output frame width."),
        _field("height", pa.int32(), "Output frame height."),
        _field("resize_policy", pa.string(), "center_crop or stretch."),
        _field("caption", pa.string(), "Caption from the manifest."),
        _field("subject_class", pa.string(), "person for humans, else the object class word."),
        _field("frames", pa.list_(pa.binary()), "The clip: its JPEG (q95) frames, one per frame_indices entry."),
        _field(
            "reference_png",
            pa.binary(),
            "Primary reference, PNG: subject on white (objects: cropped to the box, padded square), or the raw frame.",
        ),
        _field("reference_pngs", pa.list_(pa.binary()), "Every kept reference, PNG, primary first (training draws one per draw)."),
        _field("reference_mode", pa.string(), "shp (subject on white) or raw_frame (the frame itself)."),
        _field("mask_png", pa.binary(), "Subject mask on the primary reference frame, 8-bit PNG (0 or 255)."),
        _field("mask_pngs", pa.list_(pa.binary()), "Subject masks of every kept reference frame."),
        _field("box", pa.list_(pa.float32()), "Subject box x0, y0, x1, y1 in output pixels (the head box for humans)."),
        _field("reference_boxes", pa.list_(pa.list_(pa.float32())), "Subject boxes of every kept reference frame."),
        _field("face_count", pa.int32(), "Faces found on the reference frame (null for objects)."),
        _field("face_size_px", pa.float32(), "Width of the detected face in output pixels (null for objects)."),
        _field("detector", pa.string(), "Detection backend name."),
        _field("detector_version", pa.string(), "Its weights digest or library version."),
        _field("segmenter", pa.string(), "Segmentation backend name."),
        _field("segmenter_version", pa.string(), "Its weights digest or library version."),
        _field("config_hash", pa.string(), "Digest of the config fields that shape rows."),
        _field("run_id", pa.string(), "Run that wrote the row."),
        _field("video_latents", pa.binary(), "float16 VAE latents (4, F, h, w) of the clip's F frames when latents.encode, else null."),
        _field("reference_latents", pa.binary(), "float16 VAE latents (4, 1, h, w) when latents.encode, else null."),
        _field("text_embeddings", pa.binary(), "float16 caption embeddings (77, D) when latents.encode, else null."),
        _field("latent_shape", pa.list_(pa.int32()), "Shape of video_latents."),
        _field("text_embedding_shape", pa.list_(pa.int32()), "Shape of text_embeddings."),
        _field("latent_preset", pa.string(), "Preset whose encoders made the latents."),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        _field("source_uri", pa.string(), "Where the video was (to be) read from.", False),
        _field("source_id", pa.string(), "Manifest source_id."),
        _field("sample_id", pa.string(), "Sample id it would have had."),
        _field("clip_index", pa.int32(), "The clip rejected, or null when the whole source was."),
        _field("stage", pa.string(), "Stage that rejected it.", False),
        _field("reason_code", pa.string(), f"One of {sorted(REASONS)}.", False),
        _field("message", pa.string(), "What went wrong and, where known, how to fix it."),
        _field("retryable", pa.bool_(), "Whether a re-run with sources.retry_quarantined may succeed."),
        _field("attempt", pa.int32(), "1 for the first try of this source, +1 per retry."),
        _field("run_id", pa.string(), "Run that quarantined it."),
    ]
)

# Columns that travel between stages but are not written: raw RGB pixels of the reference candidates
# (decode -> detect) and of the chosen one (detect -> segment -> highlight), failure state, the
# source's shots and clip plans, and the bookkeeping of the part file (shard) the row belongs to.
_WORKING_ONLY = [
    pa.field("shot_cuts", pa.list_(pa.int32())),
    pa.field("clip_plans_json", pa.string()),
    pa.field("source_clips", pa.int32()),
    pa.field("shard", pa.int64()),
    pa.field("shard_pending", pa.int32()),
    pa.field("shard_digest", pa.string()),
    pa.field("shard_generation", pa.int32()),
    pa.field("shard_previous", pa.string()),
    pa.field("shard_reopened", pa.bool_()),
    pa.field("finished_at", pa.float64()),
    pa.field("candidate_frames", pa.list_(pa.binary())),
    pa.field("reference_frames", pa.list_(pa.binary())),
    pa.field("reference_faces_json", pa.string()),
    pa.field("stage", pa.string()),
    pa.field("reason_code", pa.string()),
    pa.field("message", pa.string()),
    pa.field("retryable", pa.bool_()),
    pa.field("attempt", pa.int32()),
    pa.field("timings_json", pa.string()),
]
WORKING_SCHEMA = pa.schema([pa.field(f.name, f.type, nullable=True) for f in DATASET_SCHEMA] + _WORKING_ONLY)
