"""The weight-free video-quality and identity metrics against straightforward implementations written here."""

import cv2
import numpy as np
import pytest

from metrics.video_quality import (
    FARNEBACK,
    I2V_SUBJECT_WEIGHTS_MARCH_2024,
    HumanIdentity,
    aesthetic_video_score,
    human_identity,
    human_identity_mean,
    i2v_subject,
    motion_smoothness,
    opens2v_frame_indices,
    opens2v_motion_amplitude,
    opens2v_motion_statistic,
    temporal_flickering,
)

# --- OpenS2V frame sampling and aesthetic mean -------------------------------------------------


@pytest.mark.parametrize(("total", "count"), [(16, 32), (49, 32), (121, 32), (16, 16), (5, 3), (1, 32)])
def test_frame_indices_are_numpys_int_linspace(total, count):
    assert opens2v_frame_indices(total, count).tolist() == np.linspace(0, total - 1, count, dtype=int).tolist()


def test_every_frame_when_no_count_is_given():
    assert opens2v_frame_indices(7, None).tolist() == list(range(7))


def test_aesthetic_mean_counts_repeated_frames():
    scores = np.arange(16, dtype=float)
    indices = opens2v_frame_indices(16, 32)
    by_hand = sum(scores[i] for i in indices) / 32
    assert aesthetic_video_score(scores, indices) == pytest.approx(by_hand)
    assert aesthetic_video_score(scores, indices) < scores.mean()  # frame 0 counts three times, frame 15 once
    assert aesthetic_video_score([4.0, 6.0]) == 5.0
    with pytest.raises(ValueError, match="NaN or inf at a sampled frame"):
        aesthetic_video_score([np.nan, 1.0], [0, 1])
    assert aesthetic_video_score([np.nan, 1.0, 3.0], [1, 2]) == 2.0


# --- OpenS2V motion ----------------------------------------------------------------------------


def block_mean_statistic(flows, factor):
    """Area downscaling by an integer factor is the mean of each factor x factor block."""
    pairs, height, width, _ = flows.shape
    blocks = flows.reshape(pairs, height // factor, factor, width // factor, factor, 2).astype(np.float64).mean(axis=(2, 4))
    return abs(blocks.mean(axis=0).mean())


def test_motion_statistic_of_a_uniform_shift_is_the_mean_of_its_components():
    flows = np.zeros((3, 48, 64, 2), np.float32)
    flows[..., 0], flows[..., 1] = 3.0, -1.0
    assert opens2v_motion_statistic(flows) == pytest.approx(1.0)  # |3 + (-1)| / 2
    flows[..., 1] = 1.0
    assert opens2v_motion_statistic(flows) == pytest.approx(2.0)


def test_opposite_motions_cancel():
    flows = np.zeros((2, 32, 64, 2), np.float32)
    flows[0, ..., 0], flows[1, ..., 0] = 5.0, -5.0
    assert opens2v_motion_statistic(flows) == pytest.approx(0.0, abs=1e-7)


def test_motion_statistic_equals_block_means_of_random_flows():
    rng = np.random.default_rng(0)
    flows = rng.normal(0.3, 2.0, size=(5, 64, 128, 2)).astype(np.float32)  # 128 -> 16 wide: 8 x 8 blocks
    assert opens2v_motion_statistic(flows) == pytest.approx(block_mean_statistic(flows, 8), abs=1e-5)


def panning_video(frames=6, shift=2, height=96, width=128):
    """A smooth texture whose window moves left by `shift` px a frame, so its content moves right: u = +shift."""
    rng = np.random.default_rng(1)
    big = cv2.GaussianBlur(rng.uniform(0, 255, (height, width + shift * frames + 80, 3)).astype(np.float32), (0, 0), 3)
    big = cv2.normalize(big, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    start = shift * frames + 40
    return np.stack([big[:, start - shift * k : start - shift * k + width] for k in range(frames)])


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_motion_amplitude_of_a_pan_is_half_its_speed_and_is_opens2vs_farneback_chain(shift):
    video = panning_video(shift=shift)
    gray = [cv2.cvtColor(np.ascontiguousarray(frame[..., ::-1]), cv2.COLOR_RGB2GRAY) for frame in video]  # BGR weights on RGB
    flows = np.stack([cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0) for a, b in zip(gray[:-1], gray[1:])])
    assert FARNEBACK == {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2, "flags": 0}
    amplitude = opens2v_motion_amplitude(video)
    assert amplitude == pytest.approx(block_mean_statistic(flows, 8), abs=1e-5)
    assert amplitude == pytest.approx(shift / 2, abs=0.1)  # u = shift, v = 0 -> |shift + 0| / 2
    assert opens2v_motion_amplitude(np.stack([video[0]] * 4)) == pytest.approx(0.0, abs=1e-3)  # Farneback: ~4e-4 on a still


def test_motion_refuses_a_single_frame():
    with pytest.raises(ValueError, match="F >= 2"):
        opens2v_motion_amplitude(np.zeros((1, 32, 32, 3), np.uint8))


# --- VBench temporal flickering and motion smoothness ------------------------------------------


def test_flicker_of_a_known_amount():
    base = np.full((24, 32, 3), 100, np.uint8)
    video = np.stack([base, base + 6, base, base + 6, base])  # every pair differs by 6 everywhere
    assert temporal_flickering(video) == pytest.approx((255 - 6) / 255)
    assert temporal_flickering(np.stack([base] * 3)) == 1.0


def test_flicker_equals_a_loop_over_pairs_on_random_frames():
    video = np.random.default_rng(2).integers(0, 256, (7, 20, 30, 3), dtype=np.uint8)
    differences = [np.mean(np.abs(video[i + 1].astype(float) - video[i].astype(float))) for i in range(len(video) - 1)]
    assert temporal_flickering(video) == pytest.approx((255 - np.mean(differences)) / 255, abs=1e-6)


def average(a, b):
    return ((a.astype(np.uint16) + b) // 2).astype(np.uint8)


def test_smoothness_of_a_linear_ramp_under_an_averaging_interpolator_is_one():
    video = np.stack([np.full((8, 8, 3), 10 * k, np.uint8) for k in range(16)])
    assert motion_smoothness(video, average) == 1.0


def test_smoothness_compares_each_middle_with_the_odd_frame_it_replaces():
    video = np.stack([np.full((8, 8, 3), 10 * k, np.uint8) for k in range(16)])
    calls = []

    def copy_first(a, b):
        calls.append((int(a[0, 0, 0]), int(b[0, 0, 0])))
        return a.copy()

    assert motion_smoothness(video, copy_first) == pytest.approx((255 - 10) / 255)  # frame 2k + 1 is 10 above frame 2k
    assert calls == [(20 * k, 20 * k + 20) for k in range(7)]  # 16 frames: evens 0..14, 7 middles, frame 15 unused


def test_smoothness_equals_a_straightforward_loop_on_random_frames():
    video = np.random.default_rng(3).integers(0, 256, (9, 12, 10, 3), dtype=np.uint8)
    expected = []
    for k in range(4):  # evens 0, 2, 4, 6, 8: middles of (0, 2) ... (6, 8) against frames 1, 3, 5, 7
        middle = average(video[2 * k], video[2 * k + 2])
        expected.append(np.mean(np.abs(middle.astype(int) - video[2 * k + 1].astype(int))))
    assert motion_smoothness(video, average) == pytest.approx((255 - np.mean(expected)) / 255)


def test_smoothness_refuses_a_bad_interpolation():
    video = np.zeros((4, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8 frame of shape"):
        motion_smoothness(video, lambda a, b: a.astype(np.float32))


# --- VBench-I2V i2v_subject ----------------------------------------------------------------------


def i2v_by_hand(frames, reference, weights):
    def cos(a, b):
        return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))

    conformity = [max(0.0, cos(reference, f)) for f in frames]
    consecutive = [max(0.0, cos(frames[i - 1], frames[i])) for i in range(1, len(frames))]
    return weights[0] * max(conformity) + weights[1] * np.mean(consecutive) + weights[2] * min(consecutive)


@pytest.mark.parametrize("weights", [(0.4, 0.3, 0.3), I2V_SUBJECT_WEIGHTS_MARCH_2024])
def test_i2v_subject_equals_a_loop_with_clamped_cosines(weights):
    rng = np.random.default_rng(4)
    frames = rng.normal(size=(16, 24))
    frames[5] = -frames[4]  # a negative consecutive cosine, clamped to 0 (and then the minimum)
    reference = rng.normal(size=24)
    got = i2v_subject(frames, reference, weights=weights)
    assert got == pytest.approx(i2v_by_hand(frames, reference, weights), abs=1e-12)


def test_i2v_subject_of_a_still_copy_of_the_reference_is_one():
    reference = np.random.default_rng(5).normal(size=32)
    assert i2v_subject(np.stack([reference * 3] * 8), reference) == pytest.approx(1.0)


def test_i2v_subject_refuses_mismatched_dimensions():
    with pytest.raises(ValueError, match="dimension 8 but the frame embeddings have 4"):
        i2v_subject(np.ones((3, 4)), np.ones(8))


# --- VBench-2.0 human identity -------------------------------------------------------------------


def vbench2_by_hand(detections, threshold=0.4, min_frames=20):
    """VBench-2.0's loop on what its detector returns: per frame a list of face dicts, no face = one empty box."""
    anchor, consistent, counted = None, 0, 0
    for index, faces in enumerate(detections):
        if len(faces) != 1:
            if index == 0:
                return None
            continue
        box, embedding = faces[0]
        if len(box) != 4:
            if index == 0:
                return None
            consistent, counted = consistent + 1, counted + 1  # falls through its checks: valid and consistent
            continue
        if index == 0:
            anchor = embedding
            continue
        similarity = np.dot(embedding, anchor) / (np.linalg.norm(embedding) * np.linalg.norm(anchor))
        consistent += similarity >= threshold
        counted += 1
    return None if counted < min_frames else consistent / counted


def random_video(rng, frames, dim=16):
    """Per frame: what the suite hands over (None / (D,) / (K, D)) and what VBench-2.0's detector would return."""
    anchor = rng.normal(size=dim)
    ours, theirs = [], []
    for index in range(frames):
        kind = rng.choice(["one", "none", "two"], p=[0.7, 0.15, 0.15]) if index else rng.choice(["one", "none"], p=[0.9, 0.1])
        if kind == "none":
            ours.append(None)
            theirs.append([([], None)])
        elif kind == "two":
            pair = rng.normal(size=(2, dim))
            ours.append(pair)
            theirs.append([([0, 0, 9, 9], pair[0]), ([20, 20, 29, 29], pair[1])])
        else:
            face = anchor + rng.normal(scale=rng.choice([0.3, 2.5]), size=dim)  # close to the anchor or not
            ours.append(face)
            theirs.append([([0, 0, 9, 9], face)])
    return ours, theirs


@pytest.mark.parametrize("min_frames", [20, 5])
def test_human_identity_equals_vbench2s_loop_on_random_videos(min_frames):
    rng = np.random.default_rng(6)
    for _ in range(60):
        ours, theirs = random_video(rng, frames=int(rng.integers(2, 40)))
        result = human_identity(ours, min_frames=min_frames)
        expected = vbench2_by_hand(theirs, min_frames=min_frames)
        assert (result.score is None) == (expected is None)
        if expected is not None:
            assert result.score == pytest.approx(expected)


def test_human_identity_of_a_known_video():
    anchor = np.array([1.0, 0.0])
    same, other = np.array([0.9, 0.1]), np.array([0.0, 1.0])  # cosines 0.99 and 0.0
    frames = [anchor, same, other, np.zeros((0, 2)), np.stack([same, other]), same]
    result = human_identity(frames, min_frames=3)
    # valid after the first: same, other, the faceless frame (consistent, as VBench-2.0 counts it), same; two faces skipped
    assert result == HumanIdentity(3 / 4, "scored", 3, 4, 6)
    skipped = human_identity(frames, min_frames=3, faceless_frames="skipped")
    assert skipped == HumanIdentity(2 / 3, "scored", 2, 3, 6)


def test_human_identity_leaves_out_what_vbench2_leaves_out():
    face = np.array([1.0, 0.0])
    assert human_identity([None, face, face]).status == "first_frame_not_one_face"
    assert human_identity([np.stack([face, face]), face]).status == "first_frame_not_one_face"
    sixteen = human_identity([face] * 16)
    assert sixteen.status == "too_few_frames" and sixteen.score is None and sixteen.valid_frames == 15  # 15 < 20
    assert human_identity([face] * 16, min_frames=15).score == 1.0
    assert human_identity_mean([sixteen, human_identity([face] * 21), HumanIdentity(0.5, "scored", 1, 2, 3)]) == 0.75
    assert human_identity_mean([sixteen]) is None
