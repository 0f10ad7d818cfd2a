"""The preprocessing job end to end on a real local Ray cluster over a synthetic corpus."""

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as pa_ds
import pyarrow.parquet as pq
import pytest
import yaml

from metrics.io import decode_image
from pipelines.configs import validate
from pipelines.preprocess.config import (
    ClipsConfig,
    CurationTrackingConfig,
    LatentsConfig,
    ModelsConfig,
    OutputConfig,
    PreprocessConfig,
    ReferencesConfig,
    ResourcesConfig,
    SourcesConfig,
)
from pipelines.preprocess.schema import DATASET_SCHEMA, QUARANTINE_SCHEMA
from pipelines.preprocess.video import resize
from processes import kill_tree

pytestmark = pytest.mark.slow
SIZE = 128


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from pipelines.preprocess.synthetic import make_corpus

    return make_corpus(tmp_path_factory.mktemp("corpus"), num_faces=8, num_objects=6, seed=0, degenerate=True)


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def read_dir(path: Path):
    if not path.is_dir():
        return None
    return pa_ds.dataset(str(path), format="parquet").to_table()


@pytest.fixture(scope="module")
def first_run(corpus, ray_cluster, tmp_path_factory):
    from pipelines.preprocess.dataflow import run_preprocess

    out = tmp_path_factory.mktemp("run1")
    config = PreprocessConfig(
        input=str(corpus.manifest_path),
        output_dir=str(out),
        clips=ClipsConfig(size=SIZE),
        tracking=CurationTrackingConfig(mlflow_tracking_uri=f"sqlite:///{out}/mlflow.db"),
    )
    result = run_preprocess(config, progress=False)
    return config, result


def test_broken_files_quarantined_with_their_reason_good_ones_kept(corpus, first_run):
    config, result = first_run
    out = Path(config.output_dir)
    data, quarantine = read_dir(out / "data"), read_dir(out / "quarantine")
    reasons = {r["source_id"]: r["reason_code"] for r in quarantine.to_pylist()}
    kept = set(data.column("source_id").to_pylist())
    for source_id, expected in corpus.expected.items():
        if expected is None:
            assert source_id in kept, (source_id, reasons.get(source_id))
        else:
            assert reasons.get(source_id) in expected.split("|"), (source_id, reasons.get(source_id), expected)
    assert len(kept) + len(reasons) == len(corpus.expected) == data.num_rows + quarantine.num_rows
    for row in quarantine.to_pylist():
        assert row["message"] and row["stage"] and row["attempt"] == 1 and row["run_id"] == config.run_id
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == len(kept) and summary["quarantined"] == len(reasons)
    assert summary["clips_per_s"] > 0 and set(summary["stage_seconds"]) >= {"probe", "decode", "detect", "segment"}


def test_dataset_has_the_documented_schema(first_run):
    config, _ = first_run
    out = Path(config.output_dir)
    for directory, schema in (("data", DATASET_SCHEMA), ("quarantine", QUARANTINE_SCHEMA)):
        for part in (out / directory).glob("*.parquet"):
            written = pq.read_schema(part)
            assert written.names == schema.names
            assert [f.type for f in written] == [f.type for f in schema]
    row = read_dir(out / "data").to_pylist()[0]
    assert len(row["frames"]) == len(row["frame_indices"]) >= 16 and decode_image(row["frames"][0]).shape == (SIZE, SIZE, 3)
    assert len(row["frame_indices"]) <= config.clips.span_frames and row["resize_policy"] == "stretch"  # the paper's default
    steps = np.diff(row["frame_indices"])
    assert np.all(steps == row["stride"])  # one span at the clip's stride: any 16 in a row are a training window
    assert row["reference_frame_index"] in row["reference_candidates"] and len(row["box"]) == 4
    assert 1 <= len(row["reference_pngs"]) <= config.references.per_clip and row["reference_pngs"][0] == row["reference_png"]
    assert row["reference_frame_indices"][0] == row["reference_frame_index"] and row["reference_mode"] == "shp"
    assert len(row["mask_pngs"]) == len(row["reference_boxes"]) == len(row["reference_pngs"])
    assert row["detector"] and row["detector_version"] and row["segmenter"] and row["config_hash"] == config.config_hash()


def true_mask(corpus, source_id, frame_index, size):
    masks = np.load(corpus.output_dir / f"{source_id}.masks.npz")["masks"]
    return resize(masks[frame_index].astype(np.uint8)[..., None].repeat(3, -1) * 255, size, "stretch")[..., 0] > 127


def test_reference_masks_match_the_true_masks_on_face_videos(corpus, first_run):
    config, _ = first_run
    rows = [r for r in read_dir(Path(config.output_dir) / "data").to_pylist() if r["subject_class"] == "person"]
    assert len(rows) >= 6
    ious = []
    for row in rows:  # every kept reference of a clip, not only the primary one
        for frame_index, mask_png, reference_png in zip(row["reference_frame_indices"], row["mask_pngs"], row["reference_pngs"]):
            truth = true_mask(corpus, row["source_id"], frame_index, SIZE)
            predicted = decode_image(mask_png, keep_gray=True) > 127
            ious.append((predicted & truth).sum() / (predicted | truth).sum())
            reference = decode_image(reference_png)
            assert np.all(reference[~predicted] == 255)  # white background
    # Weight-free GrabCut is imperfect next to busy textures; the set as a whole must reach 0.8.
    assert np.mean(ious) >= 0.8, ious
    assert np.mean(np.array(ious) >= 0.8) >= 0.75, ious


def test_raw_frame_references_keep_the_same_clips_with_the_frame_itself(corpus, first_run, ray_cluster, tmp_path):
    """The ablation rows without SHP: same clips and reference frames as SHP, the reference is the raw frame."""
    from pipelines.preprocess.dataflow import run_preprocess
    from pipelines.preprocess.video import decode_frames, read_bytes

    shp_config, _ = first_run
    config = PreprocessConfig(
        input=str(corpus.manifest_path),
        output_dir=str(tmp_path / "raw"),
        clips=ClipsConfig(size=SIZE),
        references=ReferencesConfig(mode="raw_frame"),
    )
    run_preprocess(config, progress=False)
    raw = {r["sample_id"]: r for r in read_dir(tmp_path / "raw" / "data").to_pylist()}
    shp = {r["sample_id"]: r for r in read_dir(Path(shp_config.output_dir) / "data").to_pylist()}
    assert raw.keys() == shp.keys() and len(raw) >= 8
    for sample_id, row in raw.items():
        assert row["reference_mode"] == "raw_frame" and row["reference_frame_indices"] == shp[sample_id]["reference_frame_indices"]
        indices = row["reference_frame_indices"]
        frames = decode_frames(read_bytes(row["source_uri"]), row["source_uri"], indices, size=SIZE, policy="stretch")
        for frame_index, reference_png, shp_png in zip(indices, row["reference_pngs"], shp[sample_id]["reference_pngs"]):
            np.testing.assert_array_equal(decode_image(reference_png), frames[frame_index])
            assert not np.array_equal(decode_image(shp_png), frames[frame_index])  # SHP painted the background white


def optimized_physical_plan(ds) -> str:
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        ds.explain()
    return printed.getvalue().split("Physical Plan (Optimized)")[1]


def test_weight_free_stages_run_inside_the_decode_tasks_model_stages_on_actor_pools(corpus, ray_cluster):
    from metrics.backends.registry import BackendSpec
    from pipelines.preprocess.dataflow import build_dataset, task_stages

    weight_free = PreprocessConfig(input=str(corpus.manifest_path), output_dir="unused", clips=ClipsConfig(size=SIZE))
    plan = optimized_physical_plan(build_dataset(weight_free, [(0, 24)]))
    # One task decodes a video and finds, segments and highlights its subject: the frames never leave it.
    assert [s.name for s in task_stages(weight_free)] == [
        "probe",
        "validate",
        "shots",
        "clip_sampling",
        "decode",
        "detect",
        "segment",
        "highlight",
    ]
    assert plan.count("TaskPoolMapOperator[MapBatches(StageChain)]") == 1
    assert plan.count("ActorPoolMapOperator") == 1 and "ActorPoolMapOperator[MapBatches(WriteStage)]" in plan

    models = PreprocessConfig(
        input=str(corpus.manifest_path),
        output_dir="unused",
        clips=ClipsConfig(size=SIZE),
        models=ModelsConfig(
            face_detector=BackendSpec("insightface", {"model_dir": "models/buffalo_l"}),
            object_detector=BackendSpec("grounding-dino", {"model_id_or_dir": "models/gd"}),
            segmenter=BackendSpec("sam", {"checkpoint_path": "models/sam.pth"}),
        ),
    )
    plan = optimized_physical_plan(build_dataset(models, [(0, 24)]))
    assert [s.name for s in task_stages(models)] == ["probe", "validate", "shots", "clip_sampling", "decode"]
    assert "ActorPoolMapOperator[MapBatches(DetectStage)]" in plan
    assert "ActorPoolMapOperator[MapBatches(SegmentStage)]" in plan


def test_a_model_backend_moves_detection_to_an_actor_pool_end_to_end(corpus, ray_cluster, tmp_path):
    """insightface loads weights, so the whole detect stage (the centre-GrabCut object detector too) runs on
    the detect actor pool, between the decode tasks and the GrabCut segmentation tasks."""
    import tiny_models
    from metrics.backends.registry import BackendSpec
    from pipelines.actor_pool import ActorPoolConfig
    from pipelines.preprocess.dataflow import detect_in_tasks, run_preprocess

    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "path,caption,subject_class\n"
        + "".join(
            f"{corpus.output_dir / name}.mp4,A {subject}.,{subject}\n" for name, subject in (("face_000", "person"), ("cat_000", "cat"))
        )
    )
    scrfd_dir = tiny_models.save_tiny_scrfd(tmp_path / "scrfd").parent
    config = PreprocessConfig(
        input=str(manifest),
        output_dir=str(tmp_path / "out"),
        clips=ClipsConfig(size=SIZE),
        models=ModelsConfig(face_detector=BackendSpec("insightface", {"model_dir": str(scrfd_dir), "det_size": 64})),
        resources=ResourcesConfig(detect=ActorPoolConfig(num_cpus=0.25, batch_size=2)),
    )
    assert not detect_in_tasks(config)
    result = run_preprocess(config, progress=False)

    assert sum(result.statuses.values()) == 2
    [cat] = read_dir(tmp_path / "out" / "data").to_pylist()
    assert (
        cat["source_id"] == str(corpus.output_dir / "cat_000.mp4") and cat["detector"] == "center-grabcut" and cat["segmenter"] == "grabcut"
    )
    assert decode_image(cat["reference_png"]).shape == (SIZE, SIZE, 3)
    # The tiny SCRFD only fires on bright stride cells, which the person clip lacks: rejected by the actor.
    [face] = read_dir(tmp_path / "out" / "quarantine").to_pylist()
    assert (face["source_id"], face["stage"], face["reason_code"]) == (str(corpus.output_dir / "face_000.mp4"), "detect", "no_subject")


def test_curation_run_logged_to_mlflow(first_run, tmp_path):
    import mlflow

    from pipelines.preprocess.reporting import log_curation_run

    config, result = first_run
    run_id = log_curation_run(config, result.summary)
    client = mlflow.MlflowClient(tracking_uri=config.tracking.mlflow_tracking_uri)
    run = client.get_run(run_id)
    assert run.data.params["clips.size"] == str(SIZE) and run.data.params["models.segmenter.name"] == "grabcut"
    assert run.data.metrics["samples"] == result.summary["samples"]
    assert run.data.metrics["status.unreadable"] >= 1
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"summary.json", "contact_sheet.png", "config.yaml"} <= artifacts
    logged = Path(client.download_artifacts(run_id, "config.yaml", dst_path=str(tmp_path)))
    assert validate(PreprocessConfig, yaml.safe_load(logged.read_text())) == config  # every key, re-runnable


def run_cli(corpus, out, *extra, env=None):
    command = [
        sys.executable,
        "-m",
        "jobs.preprocess",
        "--input",
        str(corpus.manifest_path),
        "--output-dir",
        str(out),
        "--set",
        f"clips.size={SIZE}",
        "--no-progress",
        *extra,
    ]
    return subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def rows_by_sample(out):
    table = read_dir(Path(out) / "data")
    return {r["sample_id"]: r for r in table.to_pylist()}, table.num_rows


def parts_bytes(out: Path) -> dict[str, bytes]:
    return {f"{d}/{p.name}": p.read_bytes() for d in ("data", "quarantine") for p in sorted((out / d).glob("*.parquet"))}


def test_kill_and_resume_gives_the_uninterrupted_dataset(corpus, ray_cluster, tmp_path):
    """SIGKILL of the job's process group at a random point with parts committed and others open; the re-run
    ends with byte-identical part files, redoing neither committed shards nor staged rows."""
    import random

    from pipelines.preprocess.dataflow import run_preprocess

    small = dict(sources_per_part=3, flush_interval_s=1.0)
    reference = tmp_path / "reference"
    run_preprocess(
        PreprocessConfig(
            input=str(corpus.manifest_path), output_dir=str(reference), clips=ClipsConfig(size=SIZE), output=OutputConfig(**small)
        ),
        progress=False,
    )

    out = tmp_path / "killed"
    flags = [x for k, v in small.items() for x in ("--set", f"output.{k}={v}")]
    env = os.environ | {"RAY_ADDRESS": "local"}
    process = run_cli(corpus, out, *flags, env=env)
    markers = out / "_markers"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not (markers.is_dir() and len(list(markers.iterdir())) >= 2):
        time.sleep(0.05)
    delay = random.Random().uniform(0, 1.0)
    time.sleep(delay)
    assert process.poll() is None, "the job finished before it could be killed: " + process.stdout.read()
    kill_tree(process)
    committed = {p.name: p.stat().st_mtime_ns for p in markers.glob("*.json")}
    sources_committed = sum(json.loads((markers / name).read_text())["sources"] for name in committed)
    committed_shards = {name.split("-")[1] for name in committed}
    # Staging of a shard whose marker is written is a cleanup the kill cut short: those rows are committed.
    staged = {
        r["source_id"]
        for p in (out / "_staging").rglob("*.parquet")
        if p.parent.name.split("-")[1] not in committed_shards
        for r in pq.read_table(p, columns=["source_id"]).to_pylist()
    }
    open_shards = list((out / "_plan").glob("*.parquet"))
    assert len(committed) >= 2 and open_shards, (delay, committed, open_shards)

    resumed = run_cli(corpus, out, *flags, env=env)
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert "INFO pipelines.preprocess.dataflow:" in output and " already complete, " in output  # `python -m` logs
    summary = json.loads((out / "summary.json").read_text())
    # Work durable before the kill is not redone: committed shards untouched, staged sources skipped.
    assert {name: (markers / name).stat().st_mtime_ns for name in committed} == committed, delay
    assert summary["skipped_complete"] == sources_committed + len(staged), (delay, summary)
    assert summary["processed_this_run"] == len(corpus.expected) - summary["skipped_complete"]
    # Same parts, same bytes: no duplicates, nothing lost, rows identical to the uninterrupted run.
    assert parts_bytes(out) == parts_bytes(reference), delay
    assert not list((out / "_staging").rglob("*.parquet")) and not list((out / "_plan").glob("*"))
    rows, count = rows_by_sample(out)
    assert count == len(rows)
    # The job left the config it ran with, --set and flags included, beside the dataset.
    resolved = validate(PreprocessConfig, yaml.safe_load((out / "config.yaml").read_text()))
    assert (resolved.output_dir, resolved.clips.size, resolved.output.sources_per_part) == (str(out), SIZE, 3)


def test_shots_are_found_and_no_clip_crosses_a_cut(ray_cluster, tmp_path):
    from pipelines.preprocess.dataflow import run_preprocess
    from pipelines.preprocess.synthetic import make_corpus

    corpus = make_corpus(tmp_path / "corpus", num_faces=1, num_objects=0, broken=False, multi_shot=3, frames=48, seed=1)
    config = PreprocessConfig(
        input=str(corpus.manifest_path), output_dir=str(tmp_path / "out"), clips=ClipsConfig(size=SIZE, max_per_source=8)
    )
    run_preprocess(config, progress=False)
    data = read_dir(tmp_path / "out" / "data").to_pylist()
    quarantined = read_dir(tmp_path / "out" / "quarantine")
    by_source: dict[str, list[dict]] = {}
    for row in data + (quarantined.to_pylist() if quarantined is not None else []):
        by_source.setdefault(row["source_id"], []).append(row)
    for source_id, cuts in corpus.true_cuts.items():
        rows = sorted(by_source[source_id], key=lambda r: r["clip_index"])
        ok = [r for r in rows if r.get("frames")]
        first = ok[0]
        detected = sorted({r["shot_start_frame"] for r in ok} - {0})
        # Every true cut found within a frame (a shot too short for a clip would leave no row to show it).
        assert first["source_num_shots"] == len(cuts) + 1, (source_id, cuts)
        assert len(detected) == len(cuts) and all(abs(d - c) <= 1 for d, c in zip(detected, cuts)), (detected, cuts)
        bounds = [0, *cuts, first["source_num_frames"]]
        for row in ok:
            shot = next(i for i in range(len(bounds) - 1) if bounds[i] <= row["frame_indices"][0] < bounds[i + 1])
            assert row["frame_indices"][-1] < bounds[shot + 1] + 1, row["frame_indices"]  # never across a cut
            assert bounds[shot] - 1 <= row["reference_frame_index"] < bounds[shot + 1] + 1  # reference from its own shot
        # 48-frame shots at stride 8 (121 frames a clip) fall back to stride 3: one 46-frame window each.
        assert len(rows) == len(cuts) + 1, [(r["clip_index"], r.get("reason_code")) for r in rows]
        assert len({r["sample_id"] for r in rows}) == len(rows) and [r["clip_index"] for r in rows] == list(range(len(rows)))
    [single] = by_source["face_000"]
    assert single["source_num_shots"] == 1 and single["clip_index"] == 0


def test_latent_stage_with_file_uri_input_and_output(corpus, ray_cluster, tmp_path):
    import shutil

    from pipelines.preprocess.dataflow import run_preprocess
    from pipelines.preprocess.stages.latents import latents_from_bytes
    from videomaker.encoding import encode_frames, encode_prompts, images_to_tensor
    from videomaker.loading import load_components

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("face_000.mp4", "face_001.mp4"):
        shutil.copy(corpus.output_dir / name, videos / name)
    config = PreprocessConfig(
        input=f"file://{videos}",
        output_dir=f"file://{tmp_path}/out",
        clips=ClipsConfig(size=64),
        latents=LatentsConfig(encode=True, preset="tiny"),
    )
    result = run_preprocess(config, progress=False)
    assert result.statuses == {"ok": 2}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["samples"] == 2
    rows = read_dir(tmp_path / "out" / "data").to_pylist()
    assert {r["source_uri"] for r in rows} == {f"file://{videos}/face_000.mp4", f"file://{videos}/face_001.mp4"}

    tiny = load_components("tiny")
    for row in rows:
        assert row["latent_shape"] == [4, 16, 8, 8] and row["latent_preset"] == "tiny"
        video = latents_from_bytes(row["video_latents"], row["latent_shape"])
        frames = images_to_tensor([decode_image(f) for f in row["frames"]], (64, 64)).unsqueeze(0)
        expected = encode_frames(tiny.vae, frames)[0].numpy()
        np.testing.assert_allclose(video.astype(np.float32), expected, atol=2e-3, rtol=2e-3)
        reference = latents_from_bytes(row["reference_latents"], [4, 1, 8, 8])
        assert np.isfinite(reference).all() and np.abs(reference).sum() > 0
        text = latents_from_bytes(row["text_embeddings"], row["text_embedding_shape"])
        expected_text = encode_prompts(tiny.tokenizer, tiny.text_encoder, [row["caption"]])[0].numpy()
        np.testing.assert_allclose(text.astype(np.float32), expected_text, atol=2e-3, rtol=2e-3)


def test_retry_quarantined_redoes_only_retryable_sources_in_a_new_generation(corpus, ray_cluster, tmp_path):
    import shutil

    from pipelines.preprocess.dataflow import run_preprocess

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("face_000", "cat_000"):
        shutil.copy(corpus.output_dir / f"{name}.mp4", videos / f"{name}.mp4")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "path,caption,subject_class\nvideos/face_000.mp4,A person.,person\nvideos/late.mp4,A cat.,cat\nvideos/cat_000.mp4,A cat.,cat\n"
    )
    config = PreprocessConfig(input=str(manifest), output_dir=str(tmp_path / "out"), clips=ClipsConfig(size=SIZE))
    run_preprocess(config, progress=False)
    [missing] = read_dir(tmp_path / "out" / "quarantine").to_pylist()
    assert (missing["source_id"], missing["reason_code"], missing["retryable"], missing["attempt"]) == (
        "videos/late.mp4",
        "missing",
        True,
        1,
    )
    before = {r["source_id"]: r for r in read_dir(tmp_path / "out" / "data").to_pylist()}

    shutil.copy(corpus.output_dir / "cat_001.mp4", videos / "late.mp4")  # the file arrives
    assert run_preprocess(config, progress=False).processed == 0  # without the flag: complete, nothing redone
    retried = run_preprocess(dataclasses.replace(config, sources=SourcesConfig(retry_quarantined=True)), progress=False)
    assert retried.processed == 1 and retried.skipped == 2
    assert read_dir(tmp_path / "out" / "quarantine") is None or read_dir(tmp_path / "out" / "quarantine").num_rows == 0
    after = {r["source_id"]: r for r in read_dir(tmp_path / "out" / "data").to_pylist()}
    assert set(after) == {"videos/face_000.mp4", "videos/late.mp4", "videos/cat_000.mp4"}
    for source_id, row in before.items():  # kept, not redone
        assert after[source_id]["frames"] == row["frames"]
    assert [p.name for p in (tmp_path / "out" / "data").glob("*.parquet")] == ["part-000000-g2.parquet"]
    assert [p.name.split("-")[2] for p in (tmp_path / "out" / "_markers").glob("*.json")] == ["g2"]


# bench/RESULTS.md ("Preprocess at scale"): the driver's peak RSS stayed within DRIVER_RSS_BOUND_MB from 1k
# to 100k missing-file sources and from 500 to 2,000 real videos on this machine.
DRIVER_RSS_BOUND_MB = 450


def test_5000_missing_sources_and_the_corpus_in_one_manifest(corpus, tmp_path):
    """Every missing file quarantined as `missing`, every good video kept, the driver's memory bounded."""
    manifest = tmp_path / "manifest.csv"
    lines = corpus.manifest_path.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    columns = header.split(",")
    blank = ",".join("" for _ in columns[2:])
    missing = [f"gone/{i // 500:02d}/{i:05d}.mp4,A video that is not there.,{blank}" for i in range(5000)]
    # The corpus rows interleaved with the missing ones, so good sources land in many parts.
    merged = [row for pair in zip(missing[:: len(missing) // len(rows)], rows) for row in pair]
    placed = set(merged)
    merged += [m for m in missing if m not in placed]
    manifest.write_text("\n".join([header, *merged]) + "\n")
    out = tmp_path / "out"
    # The bench's own case runner, so that the driver's memory is measured as the bench measures it.
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).parents[1] / "bench" / "preprocess_scale.py"),
            "--case",
            str(manifest),
            "--case-output",
            str(out),
        ],
        env=os.environ | {"RAY_ADDRESS": "local"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["peak_rss_mb"] < DRIVER_RSS_BOUND_MB, measured["peak_rss_mb"]

    quarantine = read_dir(out / "quarantine").to_pylist()
    reasons = {r["source_id"]: r["reason_code"] for r in quarantine}
    gone = {f"gone/{i // 500:02d}/{i:05d}.mp4" for i in range(5000)}
    assert {s for s, r in reasons.items() if r == "missing"} == gone | {"missing"}
    kept = set(read_dir(out / "data").column("source_id").to_pylist())
    assert kept == {s for s, reason in corpus.expected.items() if reason is None}
    assert len(quarantine) == len(reasons)  # no duplicates
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sources"] == 5000 + len(corpus.expected)
