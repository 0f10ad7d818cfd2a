"""Segmentation: the subject's mask on the chosen reference frame, prompted by the detected box."""

import json
from functools import partial

from metrics.backends.registry import BackendSpec
from pipelines.preprocess.backends import make_segmenter
from pipelines.preprocess.backends.base import Box
from pipelines.preprocess.images import encode_png, frame_from_bytes
from pipelines.preprocess.stages.base import RowStage
from pipelines.preprocess.video import Rejected

MIN_MASK_PIXELS = 16
MIN_MASK_BOX_SHARE = 0.02


class SegmentStage(RowStage):
    name = "segment"

    def __init__(self, *, segmenter: BackendSpec) -> None:
        self.config = segmenter
        self.segmenter = make_segmenter(segmenter.name, **segmenter.options)

    def __reduce__(self):
        # Backends hold native handles (OpenCV, torch) that are not worth pickling: a task rebuilds them.
        return partial(SegmentStage, segmenter=self.config), ()

    def process(self, row: dict) -> None:
        kept, failures = [], []
        count_kept = len(row["reference_frame_indices"])
        faces = json.loads(row.get("reference_faces_json") or "null") or [{}] * count_kept
        for frame_index, pixels, box, face in zip(row["reference_frame_indices"], row["reference_frames"], row["reference_boxes"], faces):
            mask = self.segmenter.segment(frame_from_bytes(pixels, row["width"], row["height"]), Box(*box))
            count = int(mask.sum())
            # A mask of a few pixels is noise, not a subject: a reference made from it would be all white.
            least = max(MIN_MASK_PIXELS, round(MIN_MASK_BOX_SHARE * (box[2] - box[0]) * (box[3] - box[1])))
            if count < least:
                failures.append(
                    f"frame {frame_index}: the mask for box {[round(v, 1) for v in box]} has {count} pixels, a subject needs >= {least}"
                )
                continue
            kept.append((frame_index, pixels, box, encode_png(mask.astype("uint8") * 255), face))
        if not kept:
            raise Rejected(
                "empty_mask",
                f"{row['source_uri']}: no reference frame has a usable subject mask ({'; '.join(failures)}); a subject "
                f"needs >= {MIN_MASK_BOX_SHARE:.0%} of its box, at least {MIN_MASK_PIXELS} pixels.",
            )
        row.update(
            reference_frame_index=kept[0][0],
            reference_frame_indices=[k[0] for k in kept],
            reference_frames=[k[1] for k in kept],
            box=kept[0][2],
            reference_boxes=[k[2] for k in kept],
            mask_png=kept[0][3],
            mask_pngs=[k[3] for k in kept],
            **({key: kept[0][4][key] for key in ("face_count", "face_size_px")} if kept[0][4] else {}),
            reference_faces_json=None,
            segmenter=self.segmenter.name,
            segmenter_version=self.segmenter.version,
        )
