"""The metric definitions of docs/method.md, section 7 against direct numpy computations, plus DD and Face Sim logic."""

import numpy as np
import pytest

from metrics.aggregate import aggregate, aggregate_set
from metrics.backends.base import DetectedFace
from metrics.definitions import clip_i, clip_t, face_similarity, temporal_consistency
from metrics.dynamic_degree import dynamic_degree, flow_threshold, judge_video, pair_score, required_pairs
from metrics.suite import largest_face_embedding

rng = np.random.default_rng(0)


def naive_cos(a, b):
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def test_embedding_metrics_match_a_loop_over_frames():
    frames, text, ref = rng.normal(size=(16, 8)), rng.normal(size=8), rng.normal(size=8)
    assert clip_t(frames, text) == pytest.approx(np.mean([naive_cos(f, text) for f in frames]), abs=1e-12)
    assert clip_i(frames, ref) == pytest.approx(np.mean([naive_cos(f, ref) for f in frames]), abs=1e-12)
    pairs = [naive_cos(frames[i], frames[i + 1]) for i in range(15)]
    assert temporal_consistency(frames) == pytest.approx(np.mean(pairs), abs=1e-12)


def test_embedding_metrics_are_raw_cosines_not_scaled():
    frames = np.tile([[1.0, 0.0]], (4, 1))
    assert clip_t(frames, [1.0, 1.0]) == pytest.approx(np.sqrt(0.5))
    assert temporal_consistency(frames) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: clip_t(np.ones((4, 3)), np.ones(5)), "text_embedding"),
        (lambda: clip_i(np.zeros((0, 3)), np.ones(3)), "frame_embeddings"),
        (lambda: clip_i(np.ones((2, 3)), np.zeros(3)), "reference_embedding"),
        (lambda: temporal_consistency(np.ones((1, 3))), "frame_embeddings"),
        (lambda: clip_t(np.full((2, 3), np.nan), np.ones(3)), "frame_embeddings"),
    ],
)
def test_bad_embeddings_are_refused_by_name(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


# --- dynamic degree -------------------------------------------------------------------------


def test_pair_score_is_the_mean_of_the_top_five_percent_magnitudes():
    flow = rng.normal(scale=4.0, size=(48, 40, 2))
    magnitude = np.hypot(flow[..., 0], flow[..., 1]).ravel()
    cut = int(48 * 40 * 0.05)  # 96 pixels
    expected = np.sort(magnitude)[::-1][:cut].mean()
    assert pair_score(flow) == pytest.approx(expected, rel=1e-12)


def test_pair_score_of_a_known_field():
    # 5 % of the pixels move by (3, 4) -> magnitude 5; the rest by (0, 1).
    flow = np.zeros((20, 20, 2))
    flow[..., 1] = 1.0
    flow[:1, :, :] = [3.0, 4.0]  # 20 of 400 pixels = exactly the top 5 %
    assert pair_score(flow) == pytest.approx(5.0)


@pytest.mark.parametrize("height, width, expected", [(512, 512, 12.0), (256, 256, 6.0), (320, 576, 7.5), (1024, 768, 18.0)])
def test_threshold_scales_with_the_short_side(height, width, expected):
    assert flow_threshold(height, width) == pytest.approx(expected)
    assert flow_threshold(height, width) == pytest.approx(6.0 * min(height, width) / 256)


@pytest.mark.parametrize("frames, expected", [(16, 4), (8, 2), (24, 6), (2, 0), (14, 4), (10, 2), (32, 8)])
def test_required_pairs_is_round_of_four_n_over_sixteen(frames, expected):
    assert required_pairs(frames) == expected == round(4 * frames / 16)


@pytest.mark.parametrize("height, width, frames", [(512, 512, 16), (256, 384, 16), (512, 512, 8), (384, 640, 24)])
def test_a_video_is_dynamic_exactly_when_enough_pairs_exceed_the_threshold(height, width, frames):
    threshold, needed = 6.0 * min(height, width) / 256, round(4 * frames / 16)
    fast, slow = threshold + 0.01, threshold  # equal to the threshold does not exceed it
    just_enough = [fast] * needed + [slow] * (frames - 1 - needed)
    one_short = [fast] * (needed - 1) + [slow] * (frames - needed)
    verdict = judge_video(just_enough, height=height, width=width, num_frames=frames)
    assert verdict.dynamic and verdict.pairs_above == needed and verdict.threshold == pytest.approx(threshold)
    assert not judge_video(one_short, height=height, width=width, num_frames=frames).dynamic


def test_judge_refuses_a_wrong_pair_count():
    with pytest.raises(ValueError, match="pair_scores"):
        judge_video([1.0] * 16, height=512, width=512, num_frames=16)


def test_dynamic_degree_is_the_share_of_dynamic_videos():
    assert dynamic_degree([True, False, False, True, True]) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="verdicts"):
        dynamic_degree([])


# --- Face Sim with a deterministic face backend ---------------------------------------------


class ColorSquareFaces:
    """Every non-black axis-aligned square is a face; its identity is its colour."""

    def detect(self, image):
        from skimage.measure import label, regionprops

        faces = []
        for region in regionprops(label(image.any(axis=-1))):
            y0, x0, y1, x1 = region.bbox
            faces.append(DetectedFace(x0, y0, x1, y1, 1.0))
        return faces

    def embed(self, image, face):
        return image[int(face.y0), int(face.x0)].astype(float)

    def describe(self):
        return {"name": "color-squares"}


def frame_with(*squares, size=64):
    """squares: (x0, y0, side, rgb)."""
    frame = np.zeros((size, size, 3), np.uint8)
    for x0, y0, side, color in squares:
        frame[y0 : y0 + side, x0 : x0 + side] = color
    return frame


RED, GREEN, MIX = (200, 0, 0), (0, 200, 0), (120, 120, 0)


def face_sim_of(frames, reference):
    backend = ColorSquareFaces()
    return face_similarity([largest_face_embedding(backend, f) for f in frames], largest_face_embedding(backend, reference))


def test_face_sim_uses_the_largest_face_and_skips_frames_without_one():
    reference = frame_with((10, 10, 20, RED))
    frames = [
        frame_with((2, 2, 30, RED), (40, 40, 10, GREEN)),  # largest is red: cos 1
        frame_with((2, 2, 8, RED), (30, 30, 25, MIX)),  # largest is the mix: cos = 1/sqrt(2)
        frame_with(),  # no face: skipped, not scored 0
        frame_with((5, 5, 12, GREEN)),  # cos 0
    ]
    result = face_sim_of(frames, reference)
    assert result.status == "scored"
    assert result.score == pytest.approx((1.0 + np.sqrt(0.5) + 0.0) / 3)
    assert result.frames_with_face == 3 and result.frames == 4 and result.detection_rate == pytest.approx(0.75)


def test_a_video_without_any_face_is_excluded_not_zero():
    result = face_sim_of([frame_with()] * 5, frame_with((10, 10, 20, RED)))
    assert result.status == "no_face_in_video" and result.score is None and result.detection_rate == 0.0


def test_a_reference_without_a_face_is_reported_and_frames_still_counted():
    result = face_sim_of([frame_with((1, 1, 9, RED)), frame_with()], frame_with())
    assert result.status == "reference_has_no_face" and result.score is None
    assert result.frames_with_face == 1 and result.detection_rate == 0.5


# --- aggregation ----------------------------------------------------------------------------


def record(subject, clip_t_value, face=None, face_status="scored", dynamic=False, frames=16, face_frames=16, status="ok", set_="celebrity"):
    return {
        "method": "ours",
        "set": set_,
        "subject_id": subject,
        "reference": f"{subject}.png",
        "status": status,
        "clip_t": clip_t_value,
        "clip_i": clip_t_value,
        "dino_i": clip_t_value,
        "t_cons": clip_t_value,
        "face_sim": face,
        "face_status": face_status,
        "face_frames": face_frames,
        "frames": frames,
        "dd_dynamic": dynamic,
    }


def test_per_subject_then_over_subjects_and_dd_pooled():
    records = [
        record("a", 0.1, face=0.5, dynamic=True),
        record("a", 0.3, face=None, face_status="no_face_in_video", face_frames=0),
        record("a", 0.2, face=0.7),
        record("b", 0.9, face=0.1, face_frames=8),
        record("b", None, status="error"),
    ]
    result = aggregate_set(records)
    assert result["clip_t"] == pytest.approx((np.mean([0.1, 0.3, 0.2]) + 0.9) / 2)  # not the mean of 4 videos
    assert result["face_sim"] == pytest.approx((np.mean([0.5, 0.7]) + 0.1) / 2)
    assert result["dd"] == pytest.approx(1 / 4)  # pooled over the 4 ok videos
    assert result["videos"] == 4 and result["errors"] == 1 and result["subjects"] == 2
    assert result["videos_without_face"] == 1 and result["face_sim_videos"] == 3
    assert result["face_detection_rate"] == pytest.approx((16 + 0 + 16 + 8) / 64)


def test_objects_have_no_face_sim_and_groups_are_split_by_set():
    records = [record("a", 0.2), record("cat1", 0.4, face=None, face_status="not_scored", set_="object")]
    by_set = {row["set"]: row for row in aggregate(records)}
    assert by_set["object"]["face_sim"] is None and by_set["object"]["face_detection_rate"] is None
    assert by_set["object"]["clip_t"] == pytest.approx(0.4) and by_set["celebrity"]["clip_t"] == pytest.approx(0.2)


def test_aggregates_say_which_face_protocol_their_scores_used():
    paper = [dict(record("a", 0.2, face=0.5), face_protocol="paper"), dict(record("b", 0.3, face=0.4), face_protocol="paper")]
    assert aggregate_set(paper)["face_protocol"] == "paper"
    mixed = paper + [dict(record("c", 0.1, face=0.2), face_protocol="corrected")]
    assert aggregate_set(mixed)["face_protocol"] == "corrected+paper"
    assert aggregate_set([record("a", 0.2, face=0.5)])["face_protocol"] == "unrecorded"  # records from before protocols
    objects = [dict(record("cat", 0.4, face=None, face_status="not_scored", set_="object"), face_protocol="paper")]
    assert aggregate_set(objects)["face_protocol"] is None


def test_a_subject_without_any_face_is_left_out_of_face_sim_not_averaged_as_zero():
    records = [record("a", 0.2, face=0.6), record("b", 0.2, face=None, face_status="no_face_in_video", face_frames=0)]
    result = aggregate_set(records)
    assert result["face_sim"] == pytest.approx(0.6) and result["face_sim_subjects"] == 1
