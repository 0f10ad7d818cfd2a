"""The scoring command end to end on a local Ray cluster, and its manifest checks."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from metrics.records import RECORD_SCHEMA
from pipelines.scoring.manifest import read_score_manifest
from test_metric_backends import panning_video, two_faces, write_mp4
from tracking_checks import assert_whole_config_logged


def write_manifest(path, rows):
    header = list(rows[0])
    path.write_text("\n".join([",".join(header)] + [",".join(str(r[h]) for h in header) for r in rows]) + "\n")
    return path


def test_manifest_resolves_paths_and_keeps_ids_as_text(tmp_path):
    manifest = write_manifest(
        tmp_path / "m.csv",
        [
            {"video": "a.mp4", "subject_id": "007", "prompt": "A person.", "reference": "refs/a.png", "seed": 3},
            {"video": "/abs/b.mp4", "subject_id": "008", "prompt": "A cat.", "reference": "/r/b.png", "seed": ""},
        ],
    )
    first, second = read_score_manifest(manifest, tmp_path / "videos")
    assert first.video == str(tmp_path / "videos" / "a.mp4") and first.reference == str(tmp_path / "refs" / "a.png")
    assert first.subject_id == "007" and first.seed == 3 and first.set == "custom" and first.subject_class == "person"
    assert second.video == "/abs/b.mp4" and second.seed is None


def test_manifest_dd_video_column_names_the_file_dd_reads(tmp_path):
    manifest = write_manifest(
        tmp_path / "m.csv",
        [
            {"video": "a.mkv", "subject_id": "s", "prompt": "A person.", "reference": "r.png", "dd_video": "a.gif"},
            {"video": "b.mp4", "subject_id": "s", "prompt": "A person.", "reference": "r.png", "dd_video": ""},
        ],
    )
    first, second = read_score_manifest(manifest, tmp_path / "videos")
    assert first.video == str(tmp_path / "videos" / "a.mkv") and first.dd_video == str(tmp_path / "videos" / "a.gif")
    assert second.dd_video is None  # DD reads `video`


def test_manifest_face_cur_reference_column_names_facesim_cur_s_image_or_none(tmp_path):
    row = {"video": "a.mp4", "subject_id": "s", "prompt": "A person.", "reference": "r.png"}
    manifest = write_manifest(
        tmp_path / "m.csv",
        [{**row, "face_cur_reference": "faces/w.png"}, {**row, "face_cur_reference": "none"}, {**row, "face_cur_reference": ""}],
    )
    given, skipped, default = read_score_manifest(manifest)
    assert given.face_cur_reference == str(tmp_path / "faces" / "w.png")  # resolved like `reference`
    assert skipped.face_cur_reference == "none" and default.face_cur_reference is None  # not scored; the reference, for people


def test_manifest_errors_name_the_columns_and_every_bad_row(tmp_path):
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['reference'\]"):
        read_score_manifest(write_manifest(tmp_path / "a.csv", [{"video": "a", "subject_id": "s", "prompt": "p"}]))
    rows = [
        {"video": "a", "subject_id": "s", "prompt": "p", "reference": "r"},
        {"video": "", "subject_id": "s", "prompt": "p", "reference": "r"},
        {"video": "b", "subject_id": "s", "prompt": "", "reference": ""},
    ]
    with pytest.raises(ValueError, match=r"2 bad row\(s\): row 2: empty \['video'\]; row 3: empty \['prompt', 'reference'\]"):
        read_score_manifest(write_manifest(tmp_path / "b.csv", rows))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_score_manifest(tmp_path / "none.csv")


@pytest.mark.slow
def test_score_command_writes_records_and_aggregates_matching_an_in_process_suite(tmp_path, tiny_metric_models):
    from dataclasses import asdict

    from metrics.backends import load_backends
    from metrics.records import score_requests
    from metrics.suite import MetricSuite

    videos, refs = tmp_path / "videos", tmp_path / "refs"
    videos.mkdir(), refs.mkdir()
    rows = []
    for s, subject in enumerate(("alice", "bob")):
        face = two_faces(128)
        Image.fromarray(face).save(refs / f"{subject}.png")
        for p, prompt in enumerate(["A person wearing sunglasses.", "A person playing an acoustic guitar."]):
            # Each video its own frames (identical ones would share their cached scores).
            frames = np.stack([np.roll(face, 3 * i * (p + 1) + 7 * s, axis=1) for i in range(16)])
            write_mp4(videos / f"{subject}_{p}.mp4", frames)
            rows.append(
                {
                    "video": f"{subject}_{p}.mp4",
                    "subject_id": subject,
                    "prompt": prompt,
                    "reference": f"refs/{subject}.png",
                    "set": "celebrity",
                    "subject_class": "person",
                    "seed": 0,
                }
            )
    Image.fromarray(panning_video(0, size=128)[0]).save(refs / "cat.png")
    write_mp4(videos / "cat.mp4", panning_video(6, size=128))
    rows.append(
        {
            "video": "cat.mp4",
            "subject_id": "cat1",
            "prompt": "A cat is running on the grass.",
            "reference": "refs/cat.png",
            "set": "object",
            "subject_class": "cat",
            "seed": 0,
        }
    )
    (videos / "broken.mp4").write_bytes(b"\x00" * 100)
    rows.append({**rows[0], "video": "broken.mp4"})
    manifest = write_manifest(tmp_path / "manifest.csv", rows)

    config = tmp_path / "score.yaml"
    backends = asdict(tiny_metric_models)
    config.write_text(yaml.safe_dump({"backends": backends, "scorers": {"num_cpus": 0.5, "batch_size": 2}}))
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "jobs.score",
        "--config",
        str(config),
        "--manifest",
        str(manifest),
        "--videos",
        str(videos),
        "--output-dir",
        str(out),
        "--no-progress",
        "--mlflow-tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--run-name",
        "score-test",
        "--set",
        "metric_groups=[vbench]",  # an opt-in group rides along in the same pass
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    # One video could not be scored: the others are, and the job says so with exit 1 (jobs/entry.py).
    assert result.returncode == 1, result.stderr[-3000:]
    assert "video_unreadable" in result.stderr and "celebrity" in result.stdout and "object" in result.stdout
    assert "1 item(s) failed; exit 1 (--allow-failures to accept)" in result.stderr
    assert "INFO pipelines.scoring.dataflow: Scoring 6 videos" in result.stderr  # the job's log lines are on

    table = pq.read_table(out / "records.parquet")
    assert table.schema == RECORD_SCHEMA
    records = table.to_pylist()
    assert [r["video"] for r in records] == [str(videos / r["video"]) for r in rows]  # manifest order
    assert [r["status"] for r in records] == ["ok"] * 5 + ["error"]
    assert pacsv.read_csv(out / "records.csv").num_rows == 6

    suite = MetricSuite(load_backends(tiny_metric_models), groups=("vbench",))
    requests = read_score_manifest(manifest, videos)
    expected = score_requests(suite, requests[:5])
    assert all(r["metric_groups"] == "paper,vbench" and r["temporal_flickering"] is not None for r in records[:5])
    for got, want in zip(records, expected):
        for metric in ("clip_t", "clip_i", "dino_i", "t_cons", "face_sim", "temporal_flickering", "i2v_subject"):
            assert got[metric] == pytest.approx(want[metric], abs=1e-5), metric
        assert got["dd_dynamic"] == want["dd_dynamic"] and got["face_status"] == want["face_status"]

    aggregates = {(a["method"], a["set"]): a for a in json.loads((out / "aggregates.json").read_text())}
    celebrity = aggregates[("", "celebrity")]
    assert celebrity["videos"] == 4 and celebrity["errors"] == 1 and celebrity["subjects"] == 2
    per_subject = [np.mean([r["clip_t"] for r in records[:4] if r["subject_id"] == s]) for s in ("alice", "bob")]
    assert celebrity["clip_t"] == pytest.approx(np.mean(per_subject))
    assert aggregates[("", "object")]["face_sim"] is None

    allowed = subprocess.run([*command, "--allow-failures", "--log-level", "WARNING"], capture_output=True, text=True, timeout=600)
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert "video_unreadable" in allowed.stderr and "INFO pipelines." not in allowed.stderr  # Ray keeps its own level
    # The same records again, now from the score cache the first run left in <output>/cache.
    again = pq.read_table(out / "records.parquet").to_pylist()
    assert [r.keys() for r in again] == [r.keys() for r in records]
    assert [r["cached_units"] for r in records] == [""] * 5 + [None]
    people, thing = "clip,dino,face,dd,temporal_flickering,i2v_subject", "clip,dino,dd,temporal_flickering,i2v_subject"
    assert [r["cached_units"] for r in again] == [people] * 4 + [thing] + [None]  # an error record has no units
    for got, want in zip(again, records):
        for key, value in want.items():
            if key == "cached_units":
                continue
            numeric = isinstance(value, float) or (isinstance(value, list) and value and isinstance(value[0], float))
            assert got[key] == (pytest.approx(value, rel=1e-6, abs=1e-9) if numeric else value), key

    # Each run logged one MLflow run like an evaluation's scoring part, with the manifest as its input.
    import hashlib

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("videomaker-score")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.info.run_name for r in runs] == ["score-test", "score-test"]
    run = runs[0]
    assert run.data.tags["videomaker.job"] == "score" and run.data.tags["videomaker.face_protocol"] == "corrected"
    assert run.data.params["manifest"] == str(manifest) and run.data.params["N"] == "6"
    assert run.data.metrics["celebrity.clip_t"] == pytest.approx(np.mean(per_subject))
    assert run.data.metrics["celebrity.temporal_flickering"] == pytest.approx(celebrity["temporal_flickering"])
    assert run.data.metrics["errors"] == 1 and run.data.metrics["videos"] == 6
    assert "object.face_sim" not in run.data.metrics  # no face in the object set: left out, not zero
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "scores")}
    assert logged == {f"scores/{name}" for name in ("records.parquet", "records.csv", "aggregates.json", "aggregates.csv")}
    config_text = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))).read_text()
    assert yaml.safe_load(config_text)["manifest"] == str(manifest)
    assert_whole_config_logged(run.data.params, config_text)
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "manifest" and dataset.dataset.digest == hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
    assert str(manifest) in dataset.dataset.source and dataset.tags[0].value == "scoring"
