"""Pure parts of the preprocessing job: sources, clip plans, config, geometry."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.config import load_config
from pipelines.preprocess.backends.base import Box
from pipelines.preprocess.backends import backend_class
from pipelines.preprocess.config import ActorPoolConfig, BackendConfig, PreprocessConfig
from pipelines.preprocess.dataflow import detect_in_tasks, segment_in_tasks, start_ray_for, worker_processes
from pipelines.preprocess.sampling import plan_clip
from pipelines.preprocess.sources import read_sources, sample_id_for
from pipelines.preprocess.stages.detect import head_box
from pipelines.preprocess.stages.highlight import crop_to_square


def test_long_video_clip_uses_stride_8_and_references_outside_it():
    plan = plan_clip("abc", 400, num_frames=16, stride=8, candidates=4, seed=42)
    assert plan.stride == 8 and len(plan.frame_indices) == 16
    assert np.all(np.diff(plan.frame_indices) == 8) and plan.frame_indices[-1] < 400
    assert plan.reference_away_from_clip
    assert all(i < plan.frame_indices[0] or i > plan.frame_indices[-1] for i in plan.reference_candidates)
    assert len(set(plan.reference_candidates)) == 4
    assert plan == plan_clip("abc", 400, num_frames=16, stride=8, candidates=4, seed=42)
    starts = {plan_clip(f"id{i}", 400, num_frames=16, stride=8, candidates=4, seed=42).frame_indices[0] for i in range(20)}
    assert len(starts) > 10  # the start really depends on the sample id


def test_short_video_falls_back_to_n_over_16_stride():
    plan = plan_clip("abc", 50, num_frames=16, stride=8, candidates=4, seed=0)
    assert plan.stride == 50 // 16
    assert plan.frame_indices[-1] < 50
    assert not set(plan.reference_candidates) & set(plan.frame_indices)  # between the clip's frames
    exact = plan_clip("abc", 16, num_frames=16, stride=8, candidates=4, seed=0)
    assert exact.frame_indices == list(range(16)) and not exact.reference_away_from_clip


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
    assert [s["source_id"] for s in sources] == ["a", "b"]
    assert all(s["source_uri"].startswith("file://") for s in sources)


def test_manifest_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"lacks columns \['caption'\]"):
        read_sources(str(write_manifest(tmp_path, "jsonl", [{"path": "a.mp4"}])), default_subject_class="person")
    duplicated = [{"path": "a.mp4", "caption": "x", "source_id": "s"}, {"path": "b.mp4", "caption": "y", "source_id": "s"}]
    with pytest.raises(ValueError, match="share source_id 's'"):
        read_sources(str(write_manifest(tmp_path, "jsonl", duplicated)), default_subject_class="person")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_sources(str(tmp_path / "nope.csv"), default_subject_class="person")


def test_config_from_yaml_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("input: in.csv\noutput_dir: out\nsize: 256\ndetect:\n  max_size: 3\n")
    config = load_config(PreprocessConfig, path, ["detect.min_size=2", "segmenter.name=sam", "resize_policy=stretch"])
    assert config.size == 256 and config.detect.min_size == 2 and config.detect.max_size == 3
    assert config.segmenter.name == "sam" and config.resize_policy == "stretch"
    assert config.run_id == config.config_hash()
    with pytest.raises(ValueError, match=r"unknown keys \['sizes'\]"):
        load_config(PreprocessConfig, path, ["sizes=3"])
    with pytest.raises(ValueError, match="resize_policy"):
        load_config(PreprocessConfig, path, ["resize_policy=crop"])
    with pytest.raises(ValueError, match="min_size"):
        ActorPoolConfig(min_size=3, max_size=2)


def test_config_hash_ignores_paths_and_resources():
    a = PreprocessConfig(input="a", output_dir="x")
    b = PreprocessConfig(input="b", output_dir="y", detect=ActorPoolConfig(max_size=4))
    assert a.config_hash() == b.config_hash() != PreprocessConfig(input="a", output_dir="x", size=256).config_hash()


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
        assert config.face_detector.name and config.segmenter.name
        # A pool that reserves GPUs must put its torch models on them.
        torch_backends = (("object detector", config.object_detector, config.detect),
                          ("segmenter", config.segmenter, config.segment))
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
    from pipelines.preprocess.images import decode_image, frame_from_bytes
    from pipelines.preprocess.schema import WORKING_SCHEMA
    from pipelines.preprocess.stages.decode import DecodeStage
    from pipelines.preprocess.video import decode_frames
    from videomaker.export import write_mp4

    rng = np.random.default_rng(0)
    path = write_mp4(rng.integers(0, 255, (12, 48, 64, 3), dtype=np.uint8), tmp_path / "v.mp4", fps=10)
    row = {"source_uri": str(path), "sample_id": "s", "frame_indices": [0, 2, 4], "reference_candidates": [9, 11]}
    out = DecodeStage(size=32, resize_policy="center_crop")(pa.Table.from_pylist([row], schema=WORKING_SCHEMA)).to_pylist()[0]
    # Candidates travel as raw pixels: exactly what the detector, segmenter and highlight must see.
    expected = decode_frames(path.read_bytes(), str(path), [9, 11], size=32, policy="center_crop")
    for pixels, index in zip(out["candidate_frames"], [9, 11]):
        np.testing.assert_array_equal(frame_from_bytes(pixels, out["width"], out["height"]), expected[index])
    assert [decode_image(f).shape for f in out["frames"]] == [(32, 32, 3)] * 3


MODEL_BACKENDS = dict(face_detector=BackendConfig("insightface", {"model_dir": "models/buffalo_l"}),
                      object_detector=BackendConfig("grounding-dino", {"model_id_or_dir": "models/gd"}),
                      segmenter=BackendConfig("sam", {"checkpoint_path": "models/sam.pth"}))


def test_model_backends_run_on_actor_pools_weight_free_ones_in_the_decode_tasks():
    weight_free = PreprocessConfig(input="in", output_dir="out")
    assert detect_in_tasks(weight_free) and segment_in_tasks(weight_free)
    models = PreprocessConfig(input="in", output_dir="out", **MODEL_BACKENDS)
    assert not detect_in_tasks(models) and not segment_in_tasks(models)
    # One model detector is enough to put detection on actors; each stage is placed on its own.
    mixed = PreprocessConfig(input="in", output_dir="out", face_detector=MODEL_BACKENDS["face_detector"])
    assert not detect_in_tasks(mixed) and segment_in_tasks(mixed)
    with pytest.raises(ValueError, match="Unknown segmenter 'sam2'"):
        segment_in_tasks(PreprocessConfig(input="in", output_dir="out", segmenter=BackendConfig("sam2")))


def test_worker_processes_counts_decode_tasks_actors_and_the_writer():
    config = PreprocessConfig(input="in", output_dir="out", decode_num_cpus=0.5, **MODEL_BACKENDS,
                              detect=ActorPoolConfig(max_size=2), segment=ActorPoolConfig(max_size=3))
    assert worker_processes(config, 2) == 4 + 2 + 3 + 2
    assert worker_processes(config, 16) == 32 + 2 + 3 + 2
    with_latents = PreprocessConfig(input="in", output_dir="out", encode_latents=True, latents=ActorPoolConfig(max_size=4),
                                    **MODEL_BACKENDS)
    assert worker_processes(with_latents, 2) == 4 + 1 + 1 + 4 + 2
    # Weight-free detection and segmentation start no actors.
    assert worker_processes(PreprocessConfig(input="in", output_dir="out", decode_num_cpus=0.5), 2) == 4 + 2


def test_a_local_ray_started_by_the_job_keeps_its_fractional_cpu_workers():
    """Ray keeps `num_cpus` idle workers; the job's 0.5-CPU decode tasks need more, and restarting them costs seconds."""
    import os
    import time

    import ray

    config = PreprocessConfig(input="in", output_dir="out", decode_num_cpus=0.5)
    start_ray_for(config)
    try:
        concurrent = int(ray.cluster_resources()["CPU"] / config.decode_num_cpus)

        @ray.remote(num_cpus=0)
        class Gate:
            """Holds every task until all run at once, so each wave uses `concurrent` distinct workers."""

            def __init__(self):
                self.arrived = 0

            def arrive(self):
                self.arrived += 1

            def count(self):
                return self.arrived

        @ray.remote(num_cpus=config.decode_num_cpus)
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
