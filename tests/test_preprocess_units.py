"""Pure parts of the preprocessing job: sources, clip plans, config, geometry."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.config import load_config
from metrics.backends.registry import BackendSpec
from pipelines.preprocess.backends import backend_class
from pipelines.preprocess.backends.base import Box
from pipelines.preprocess.config import ActorPoolConfig, ClipsConfig, LatentsConfig, ModelsConfig, PreprocessConfig, ResourcesConfig
from pipelines.preprocess.dataflow import detect_in_tasks, segment_in_tasks, start_ray_for, worker_processes
from pipelines.preprocess.sampling import plan_clips
from pipelines.preprocess.sources import iter_sources, sample_id_for
from pipelines.preprocess.stages.detect import head_box
from pipelines.preprocess.stages.highlight import crop_to_square


def one_clip(key, frames, **kw):
    [plan] = plan_clips(key, [(0, frames)], **kw)
    return plan


@pytest.mark.parametrize("frames, stride, kept", [(400, 8, 32), (200, 8, 25), (100, 6, 17), (16, 1, 16)])
def test_a_clip_keeps_a_span_of_frames_at_its_stride_for_training_to_draw_windows_from(frames, stride, kept):
    """Up to span_frames frames at the stride, as many as the shot holds; a short shot falls back to
    stride n // 16 and keeps what fits at that stride."""
    plan = one_clip("span", frames, num_frames=16, stride=8, candidates=4, seed=42, span_frames=32)
    assert plan.stride == stride and len(plan.frame_indices) == kept
    assert np.all(np.diff(plan.frame_indices) == stride) and 0 <= plan.frame_indices[0] and plan.frame_indices[-1] < frames
    assert all(i < plan.frame_indices[0] or i > plan.frame_indices[-1] for i in plan.reference_candidates) or frames < 120


def test_long_video_clip_uses_stride_8_and_references_outside_it():
    plan = one_clip("abc", 400, num_frames=16, stride=8, candidates=4, seed=42)
    assert plan.stride == 8 and len(plan.frame_indices) == 16
    assert np.all(np.diff(plan.frame_indices) == 8) and plan.frame_indices[-1] < 400
    assert plan.reference_away_from_clip
    assert all(i < plan.frame_indices[0] or i > plan.frame_indices[-1] for i in plan.reference_candidates)
    assert len(set(plan.reference_candidates)) == 4
    assert plan == one_clip("abc", 400, num_frames=16, stride=8, candidates=4, seed=42)
    starts = {one_clip(f"id{i}", 400, num_frames=16, stride=8, candidates=4, seed=42).frame_indices[0] for i in range(20)}
    assert len(starts) > 10  # the start really depends on the sample id


def test_short_video_falls_back_to_n_over_16_stride():
    plan = one_clip("abc", 50, num_frames=16, stride=8, candidates=4, seed=0)
    assert plan.stride == 50 // 16
    assert plan.frame_indices[-1] < 50
    assert not set(plan.reference_candidates) & set(plan.frame_indices)  # between the clip's frames
    exact = one_clip("abc", 16, num_frames=16, stride=8, candidates=4, seed=0)
    assert exact.frame_indices == list(range(16)) and not exact.reference_away_from_clip


@pytest.mark.parametrize("seed", range(5))
def test_clips_stay_inside_their_shots_and_do_not_overlap(seed):
    shots = [(0, 300), (300, 320), (320, 330), (330, 700)]  # 320-330 is too short for any clip
    plans = plan_clips(f"s{seed}", shots, num_frames=16, stride=8, candidates=4, seed=seed, max_clips=50)
    span = 15 * 8 + 1
    # Independent count: back-to-back windows per shot, full stride where it fits, else length // 16.
    expected = 300 // span + 1 + 0 + 370 // span
    assert len(plans) == expected
    assert [p.clip_index for p in plans] == list(range(expected))
    taken = set()
    for plan in plans:
        start, end = shots[plan.shot_index]
        assert (plan.shot_start_frame, plan.shot_end_frame) == (start, end)
        assert start <= plan.frame_indices[0] and plan.frame_indices[-1] < end  # never across a cut
        assert all(start <= i < end for i in plan.reference_candidates)  # references from the clip's own shot
        assert not taken & set(range(plan.frame_indices[0], plan.frame_indices[-1] + 1))
        taken |= set(range(plan.frame_indices[0], plan.frame_indices[-1] + 1))
    assert [p.frame_indices[0] for p in plans] == sorted(p.frame_indices[0] for p in plans)  # time order
    capped = plan_clips(f"s{seed}", shots, num_frames=16, stride=8, candidates=4, seed=seed, max_clips=2)
    assert len(capped) == 2
    assert plan_clips("x", [(0, 15), (15, 30)], num_frames=16, stride=8, candidates=4, seed=0) == []


def test_content_detector_scores_match_an_independent_hsv_difference():
    import cv2

    from pipelines.preprocess.shots import content_score, cuts_from_scores

    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for _ in range(2))
    ha, hb = cv2.cvtColor(a, cv2.COLOR_RGB2HSV), cv2.cvtColor(b, cv2.COLOR_RGB2HSV)
    # PySceneDetect's formula: per channel, sum |x - y| over pixels / pixel count; then the mean of H, S, V.
    expected = np.mean([np.abs(ha[..., c].astype(int) - hb[..., c].astype(int)).sum() / (24 * 32) for c in range(3)])
    assert content_score(ha, hb) == pytest.approx(expected, rel=1e-9)
    scores = [0, 40] + [1] * 18 + [40, 1, 1, 1, 50] + [1] * 20 + [27]
    # Frame 1 and 24 are within min_shot_frames of the last shot start (0 and 20): not cuts; 45 is.
    assert cuts_from_scores(scores, threshold=27, min_shot_frames=15) == [20, 45]


def read_sources(uri, **kw):
    return pa.concat_tables(list(iter_sources(uri, **kw))).to_pylist()


def write_manifest(tmp_path, fmt, rows):
    if fmt == "csv":
        path = tmp_path / "m.csv"
        pa.csv.write_csv(pa.Table.from_pylist(rows), path)
    elif fmt == "jsonl":
        path = tmp_path / "m.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows))
    else:
        path = tmp_path / "m.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_manifest_formats_and_uris(tmp_path, fmt):
    import pyarrow.csv  # noqa: F401

    rows = [
        {"path": "videos/a.mp4", "caption": "A person.", "subject_class": "Person", "source_id": "a"},
        {"path": f"file://{tmp_path}/b.mp4", "caption": "A cat.", "subject_class": "cat", "source_id": "b"},
    ]
    sources = read_sources(str(write_manifest(tmp_path, fmt, rows)), default_subject_class="person")
    assert [s["source_uri"] for s in sources] == [f"{tmp_path}/videos/a.mp4", f"file://{tmp_path}/b.mp4"]
    assert [s["subject_class"] for s in sources] == ["person", "cat"]
    assert sources[0]["sample_id"] == sample_id_for("a") != sources[1]["sample_id"]


def test_directory_input_and_file_uri(tmp_path):
    (tmp_path / "v").mkdir()
    for name in ("b.mp4", "a.mov", "notes.txt"):
        (tmp_path / "v" / name).write_bytes(b"")
    sources = read_sources(f"file://{tmp_path}/v", default_subject_class="person")
    assert [s["source_id"] for s in sources] == ["a.mov", "b.mp4"]
    assert all(s["source_uri"].startswith("file://") for s in sources)


def test_same_file_name_in_two_folders_is_two_sources_the_same_file_twice_is_refused(tmp_path):
    for folder in ("a", "b", "b/deeper"):
        (tmp_path / "v" / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / "v" / folder / "clip001.mp4").write_bytes(b"")
    sources = read_sources(str(tmp_path / "v"), default_subject_class="person")
    assert [s["source_id"] for s in sources] == ["a/clip001.mp4", "b/clip001.mp4", "b/deeper/clip001.mp4"]
    assert len({s["sample_id"] for s in sources}) == 3
    assert [s["source_uri"] for s in sources] == [str(tmp_path / "v" / f / "clip001.mp4") for f in ("a", "b", "b/deeper")]

    rows = [{"path": "a/clip001.mp4", "caption": "x"}, {"path": "b/clip001.mp4", "caption": "y"}, {"path": "a/clip001.mp4", "caption": "z"}]
    manifest = write_manifest(tmp_path / "v", "csv", rows)
    with pytest.raises(ValueError, match=r"Rows 0 and 2 of .* are the same source 'a/clip001.mp4' \(.*a/clip001.mp4 and .*a/clip001.mp4\)"):
        read_sources(str(manifest), default_subject_class="person")


def test_manifest_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"lacks columns \['caption'\]"):
        read_sources(str(write_manifest(tmp_path, "jsonl", [{"path": "a.mp4"}])), default_subject_class="person")
    duplicated = [{"path": "a.mp4", "caption": "x", "source_id": "s"}, {"path": "b.mp4", "caption": "y", "source_id": "s"}]
    with pytest.raises(ValueError, match="Rows 0 and 1 of .* are the same source 's'"):
        read_sources(str(write_manifest(tmp_path, "jsonl", duplicated)), default_subject_class="person")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_sources(str(tmp_path / "nope.csv"), default_subject_class="person")


def test_config_from_yaml_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("input: in.csv\noutput_dir: out\nclips:\n  size: 256\nresources:\n  detect:\n    max_size: 3\n")
    config = load_config(
        PreprocessConfig, path, ["resources.detect.min_size=2", "models.segmenter.name=sam", "clips.resize_policy=stretch"]
    )
    assert config.clips.size == 256 and config.resources.detect.min_size == 2 and config.resources.detect.max_size == 3
    assert config.models.segmenter.name == "sam" and config.clips.resize_policy == "stretch"
    assert config.run_id == config.config_hash()
    with pytest.raises(ValueError, match=r"config\.clips\.sizes: unknown key"):
        load_config(PreprocessConfig, path, ["clips.sizes=3"])
    with pytest.raises(ValueError, match="clips.resize_policy"):
        load_config(PreprocessConfig, path, ["clips.resize_policy=crop"])
    with pytest.raises(ValueError, match="min_size"):
        ActorPoolConfig(min_size=3, max_size=2)


def test_config_hash_ignores_paths_and_resources():
    a = PreprocessConfig(input="a", output_dir="x")
    b = PreprocessConfig(input="b", output_dir="y", resources=ResourcesConfig(detect=ActorPoolConfig(max_size=4)))
    assert a.config_hash() == b.config_hash() != PreprocessConfig(input="a", output_dir="x", clips=ClipsConfig(size=256)).config_hash()


def test_head_box_enlarges_and_clips():
    box = head_box(Box(40, 40, 60, 60), 2.0, 100, 100)
    assert box.width == pytest.approx(40) and box.height == pytest.approx(40)
    assert (box.y0 + box.y1) / 2 < 50  # raised to cover hair
    assert head_box(Box(0, 0, 20, 20), 3.0, 100, 100).x0 == 0


def test_crop_to_square_pads_with_white():
    image = np.zeros((100, 100, 3), np.uint8)
    out = crop_to_square(image, [10, 20, 50, 40], 64)
    assert out.shape == (64, 64, 3)
    assert out[0, 32].tolist() == [255, 255, 255] and out[32, 32].tolist() == [0, 0, 0]


def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "jobs" / "configs").glob("preprocess_*.yaml"))
    assert len(configs) >= 2
    for path in configs:
        config = load_config(PreprocessConfig, path)
        assert config.models.face_detector.name and config.models.segmenter.name
        # A pool that reserves GPUs must put its torch models on them.
        torch_backends = (
            ("object detector", config.models.object_detector, config.resources.detect),
            ("segmenter", config.models.segmenter, config.resources.segment),
        )
        for kind, backend, pool in torch_backends:
            if pool.num_gpus and not backend_class(kind, backend.name).weight_free:
                assert backend.options.get("device") == "cuda", (path.name, backend)


def test_probe_stage_records_the_video_or_the_reason(tmp_path):
    from pipelines.preprocess.schema import WORKING_SCHEMA
    from pipelines.preprocess.stages.probe import ProbeStage
    from videomaker.export import write_mp4

    path = write_mp4(np.full((20, 32, 48, 3), 128, np.uint8), tmp_path / "v.mp4", fps=10)
    batch = pa.Table.from_pylist([{"source_uri": str(path), "sample_id": "s"}], schema=WORKING_SCHEMA)
    row = ProbeStage()(batch).to_pylist()[0]
    assert row["reason_code"] is None
    assert (row["codec"], row["source_num_frames"], row["source_width"], row["source_height"]) == ("h264", 20, 48, 32)
    assert row["source_fps"] == 10 and row["source_duration_s"] == pytest.approx(2.0, abs=0.15)
    assert len(row["content_sha256"]) == 64

    rejected = ProbeStage(supported_codecs=("vp9", "av1"))(batch).to_pylist()[0]
    assert rejected["reason_code"] == "unsupported_codec" and rejected["stage"] == "probe"
    assert "h264" in rejected["message"] and rejected["retryable"] is False


def test_decode_stage_candidates_are_the_decoded_frames_bit_for_bit(tmp_path):
    from metrics.io import decode_image
    from pipelines.preprocess.images import frame_from_bytes
    from pipelines.preprocess.schema import WORKING_SCHEMA
    from pipelines.preprocess.stages.decode import DecodeStage
    from pipelines.preprocess.video import decode_frames
    from videomaker.export import write_mp4

    rng = np.random.default_rng(0)
    path = write_mp4(rng.integers(0, 255, (12, 48, 64, 3), dtype=np.uint8), tmp_path / "v.mp4", fps=10)
    plans = [
        {
            "clip_index": 0,
            "frame_indices": [0, 2, 4],
            "reference_candidates": [9, 11],
            "stride": 2,
            "reference_away_from_clip": True,
            "shot_index": 0,
            "shot_start_frame": 0,
            "shot_end_frame": 12,
        },
        {
            "clip_index": 1,
            "frame_indices": [6, 7, 8],
            "reference_candidates": [11, 10],
            "stride": 1,
            "reference_away_from_clip": True,
            "shot_index": 0,
            "shot_start_frame": 0,
            "shot_end_frame": 12,
        },
    ]
    row = {"source_uri": str(path), "source_id": "v.mp4", "sample_id": "s", "clip_plans_json": json.dumps(plans)}
    clips = DecodeStage(size=32, resize_policy="center_crop")(pa.Table.from_pylist([row], schema=WORKING_SCHEMA)).to_pylist()
    # One row per clip, each with its own sample id; clip 0 keeps the source's.
    assert [c["sample_id"] for c in clips] == [sample_id_for("v.mp4", 0), sample_id_for("v.mp4", 1)]
    assert [c["source_clips"] for c in clips] == [2, 2] and clips[1]["frame_indices"] == [6, 7, 8]
    out = clips[0]
    # Candidates travel as raw pixels: exactly what the detector, segmenter and highlight must see.
    expected = decode_frames(path.read_bytes(), str(path), [9, 11], size=32, policy="center_crop")
    for pixels, index in zip(out["candidate_frames"], [9, 11]):
        np.testing.assert_array_equal(frame_from_bytes(pixels, out["width"], out["height"]), expected[index])
    assert [decode_image(f).shape for f in out["frames"]] == [(32, 32, 3)] * 3


def test_degenerate_boxes_are_no_subject_or_too_small_never_an_error():
    from pipelines.preprocess.stages.detect import usable_box

    assert usable_box(Box(-30, -30, -1, -1), 64, 64) is None  # wholly off the frame
    assert usable_box(Box(10, 10, 10, 30), 64, 64) is None  # zero width
    assert usable_box(Box(float("nan"), 0, 5, 5), 64, 64) is None
    assert usable_box(Box(-5, 60, 20, 90), 64, 64).as_list() == [0, 60, 20, 64]  # cut to the frame


@pytest.mark.parametrize("pixels, reason", [(0, "empty_mask"), (1, "empty_mask"), (15, "empty_mask"), (400, None)])
def test_a_mask_of_a_few_pixels_is_empty_mask(pixels, reason):
    from pipelines.preprocess.images import frame_to_bytes
    from pipelines.preprocess.schema import WORKING_SCHEMA
    from pipelines.preprocess.stages.segment import SegmentStage

    class FixedMask:  # stands for a backend's output: the stage's handling of it is under test
        name, version = "fixed", "1"

        def segment(self, image, box):
            mask = np.zeros(image.shape[:2], bool)
            mask.flat[:pixels] = True
            return mask

    stage = SegmentStage(segmenter=BackendSpec("grabcut"))
    stage.segmenter = FixedMask()
    row = {
        "source_uri": "v.mp4",
        "sample_id": "s",
        "width": 64,
        "height": 64,
        "box": [0.0, 0.0, 40.0, 40.0],
        "reference_boxes": [[0.0, 0.0, 40.0, 40.0]],
        "reference_frame_indices": [3],
        "reference_frames": [frame_to_bytes(np.zeros((64, 64, 3), np.uint8))],
    }
    [out] = stage(pa.Table.from_pylist([row], schema=WORKING_SCHEMA)).to_pylist()
    assert out["reason_code"] == reason, out["message"]
    if reason:
        assert f"has {pixels} pixels" in out["message"] and out["stage"] == "segment"


MODEL_BACKENDS = dict(
    face_detector=BackendSpec("insightface", {"model_dir": "models/buffalo_l"}),
    object_detector=BackendSpec("grounding-dino", {"model_id_or_dir": "models/gd"}),
    segmenter=BackendSpec("sam", {"checkpoint_path": "models/sam.pth"}),
)


def test_model_backends_run_on_actor_pools_weight_free_ones_in_the_decode_tasks():
    weight_free = PreprocessConfig(input="in", output_dir="out")
    assert detect_in_tasks(weight_free) and segment_in_tasks(weight_free)
    models = PreprocessConfig(input="in", output_dir="out", models=ModelsConfig(**MODEL_BACKENDS))
    assert not detect_in_tasks(models) and not segment_in_tasks(models)
    # One model detector is enough to put detection on actors; each stage is placed on its own.
    mixed = PreprocessConfig(input="in", output_dir="out", models=ModelsConfig(face_detector=MODEL_BACKENDS["face_detector"]))
    assert not detect_in_tasks(mixed) and segment_in_tasks(mixed)
    with pytest.raises(ValueError, match="Unknown segmenter 'sam2'"):
        segment_in_tasks(PreprocessConfig(input="in", output_dir="out", models=ModelsConfig(segmenter=BackendSpec("sam2"))))


def test_worker_processes_counts_decode_tasks_actors_and_the_writer():
    config = PreprocessConfig(
        input="in",
        output_dir="out",
        models=ModelsConfig(**MODEL_BACKENDS),
        resources=ResourcesConfig(decode_num_cpus=0.5, detect=ActorPoolConfig(max_size=2), segment=ActorPoolConfig(max_size=3)),
    )
    assert worker_processes(config, 2) == 4 + 2 + 3 + 2
    assert worker_processes(config, 16) == 32 + 2 + 3 + 2
    with_latents = PreprocessConfig(
        input="in",
        output_dir="out",
        latents=LatentsConfig(encode=True),
        resources=ResourcesConfig(latents=ActorPoolConfig(max_size=4)),
        models=ModelsConfig(**MODEL_BACKENDS),
    )
    assert worker_processes(with_latents, 2) == 4 + 1 + 1 + 4 + 2
    # Weight-free detection and segmentation start no actors.
    assert worker_processes(PreprocessConfig(input="in", output_dir="out", resources=ResourcesConfig(decode_num_cpus=0.5)), 2) == 4 + 2


def test_a_local_ray_started_by_the_job_keeps_its_fractional_cpu_workers():
    """Ray keeps `num_cpus` idle workers; the job's 0.5-CPU decode tasks need more, and restarting them costs seconds."""
    import os
    import time

    import ray

    config = PreprocessConfig(input="in", output_dir="out", resources=ResourcesConfig(decode_num_cpus=0.5))
    start_ray_for(config)
    try:
        concurrent = int(ray.cluster_resources()["CPU"] / config.resources.decode_num_cpus)

        @ray.remote(num_cpus=0)
        class Gate:
            """Holds every task until all run at once, so each wave uses `concurrent` distinct workers."""

            def __init__(self):
                self.arrived = 0

            def arrive(self):
                self.arrived += 1

            def count(self):
                return self.arrived

        @ray.remote(num_cpus=config.resources.decode_num_cpus)
        def worker_pid(gate, wanted):
            ray.get(gate.arrive.remote())
            deadline = time.monotonic() + 120
            while ray.get(gate.count.remote()) < wanted and time.monotonic() < deadline:
                time.sleep(0.05)
            return os.getpid()

        def wave():
            gate = Gate.remote()
            return set(ray.get([worker_pid.remote(gate, concurrent) for _ in range(concurrent)]))

        first = wave()
        time.sleep(4)  # Ray stops idle workers beyond its limit after ~1 s
        second = wave()
        assert len(first) == concurrent and second == first
    finally:
        ray.shutdown()


def test_a_candidate_whose_mask_fails_is_dropped_and_the_next_one_carries_its_own_face_facts():
    import json

    from pipelines.preprocess.images import frame_to_bytes
    from pipelines.preprocess.schema import WORKING_SCHEMA
    from pipelines.preprocess.stages.segment import SegmentStage

    class FirstEmpty:  # an empty mask on the first kept candidate, a subject on the others
        name, version = "fixed", "1"

        def __init__(self):
            self.calls = 0

        def segment(self, image, box):
            self.calls += 1
            mask = np.zeros(image.shape[:2], bool)
            if self.calls > 1:
                mask[10:30, 10:30] = True
            return mask

    stage = SegmentStage(segmenter=BackendSpec("grabcut"))
    stage.segmenter = FirstEmpty()
    frame = frame_to_bytes(np.zeros((64, 64, 3), np.uint8))
    row = {
        "source_uri": "v.mp4",
        "sample_id": "s",
        "width": 64,
        "height": 64,
        "box": [0.0, 0.0, 40.0, 40.0],
        "reference_frame_index": 3,
        "face_count": 1,
        "face_size_px": 30.0,
        "reference_boxes": [[0.0, 0.0, 40.0, 40.0], [5.0, 5.0, 35.0, 35.0], [1.0, 1.0, 41.0, 41.0]],
        "reference_frame_indices": [3, 8, 12],
        "reference_frames": [frame] * 3,
        "reference_faces_json": json.dumps(
            [{"face_count": 1, "face_size_px": 30.0}, {"face_count": 1, "face_size_px": 22.0}, {"face_count": 1, "face_size_px": 25.0}]
        ),
    }
    [out] = stage(pa.Table.from_pylist([row], schema=WORKING_SCHEMA)).to_pylist()
    assert out["reason_code"] is None, out["message"]
    assert out["reference_frame_indices"] == [8, 12] and out["reference_frame_index"] == 8
    assert out["box"] == [5.0, 5.0, 35.0, 35.0] and out["face_size_px"] == 22.0 and len(out["mask_pngs"]) == 2
