"""Evaluation: benchmark data, manifest checks, resumable generation, MLflow runs, compare and the nightly gate."""

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from metrics.aggregate import METRIC_LABELS
from pipelines.evaluation.benchmarks import (
    HUMAN_PROMPTS,
    OBJECT_CLASSES,
    OBJECT_PROMPTS,
    BenchmarkManifestError,
    benchmark_items,
    read_benchmark_manifest,
)
from pipelines.evaluation.generation import is_complete, write_item
from processes import kill_tree
from tracking_checks import assert_whole_config_logged

SUBJECTS = [  # two subjects per set, as the acceptance run asks
    ("ann", "celebrity", "person", "astronaut"),
    ("bob", "celebrity", "person", "astronaut_mirrored"),
    ("cid", "non_celebrity", "woman", "astronaut_mirrored"),
    ("dee", "non_celebrity", "person", "astronaut"),
    ("tom", "object", "cat", "chelsea"),
    ("mug", "object", "car", "coffee"),
]


def write_benchmark(root: Path, rows=SUBJECTS) -> Path:
    from skimage import data

    images = {
        "astronaut": data.astronaut(),
        "astronaut_mirrored": data.astronaut()[:, ::-1],
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        Image.fromarray(np.ascontiguousarray(image)).save(root / f"{name}.png")
    lines = ["subject_id,set,class,reference"] + [f"{s},{b},{c},{r}.png" for s, b, c, r in rows]
    (root / "benchmark.csv").write_text("\n".join(lines) + "\n")
    return root / "benchmark.csv"


# --- benchmarks as data -----------------------------------------------------------------------


def test_prompts_are_the_spec_lists():
    assert len(HUMAN_PROMPTS) == 25 and len(set(HUMAN_PROMPTS)) == 25
    assert HUMAN_PROMPTS[3] == "A person wearing a Superman outfit."
    assert HUMAN_PROMPTS[23] == "A person swimming in the pool"  # no full stop in the paper either
    assert OBJECT_CLASSES == ("bear", "car", "cat", "dog", "elephant", "horse", "lion", "panda", "tiger")
    assert all(len(OBJECT_PROMPTS[c]) == 10 and len(set(OBJECT_PROMPTS[c])) == 10 for c in OBJECT_CLASSES)
    assert OBJECT_PROMPTS["elephant"][1] == "An elephant crossing a river."
    assert OBJECT_PROMPTS["bear"][0] == "A bear walking through a snowy landscape."
    assert OBJECT_PROMPTS["panda"][-1] == "A panda is eating bamboo."
    assert OBJECT_PROMPTS["lion"][5:] == tuple(p.replace("tiger", "lion") for p in OBJECT_PROMPTS["tiger"][5:])
    assert OBJECT_PROMPTS["cat"][3] == "A cat is circle around a food bowl in a room, patiently waiting for mealtime."


def test_items_expand_subjects_prompts_and_seeds_with_stable_ids(tmp_path):
    subjects = read_benchmark_manifest(write_benchmark(tmp_path))
    items = benchmark_items(subjects, seeds=[0, 1], prompts_per_subject=2)
    assert len(items) == 6 * 2 * 2
    assert [i.item_id for i in items[:4]] == [
        "celebrity/ann/p00_s0",
        "celebrity/ann/p00_s1",
        "celebrity/ann/p01_s0",
        "celebrity/ann/p01_s1",
    ]
    assert items == benchmark_items(read_benchmark_manifest(tmp_path / "benchmark.csv"), seeds=[0, 1], prompts_per_subject=2)
    full = benchmark_items(subjects, sets=["object"])
    assert len(full) == 2 * 10 * 5  # 2 object subjects x 10 class prompts x default 5 seeds
    assert {i.prompt for i in full if i.subject.subject_id == "mug"} == set(OBJECT_PROMPTS["car"])
    assert Path(items[0].subject.reference).is_absolute()


def test_a_bad_manifest_names_every_bad_row(tmp_path):
    write_benchmark(tmp_path)
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    lines = [
        "subject_id,set,class,reference",
        "ann,celebrity,person,astronaut.png",  # fine
        "bob,celebrity,person,missing.png",
        "cid,celebrity,person,corrupt.png",
        "dee,famous,person,astronaut.png",
        "eve,object,unicorn,chelsea.png",
        "ann,celebrity,person,astronaut.png",
        ",object,cat,chelsea.png",
    ]
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(BenchmarkManifestError) as error:
        read_benchmark_manifest(tmp_path / "bad.csv")
    problems = error.value.problems
    assert len(problems) == 6
    message = str(error.value)
    for expected in (
        "row 2 (subject_id=bob)",
        "missing.png' does not exist",
        "row 3 (subject_id=cid)",
        "not a readable image",
        "unknown set 'famous'",
        "class 'unicorn' is not in set 'object'",
        "duplicate subject_id 'ann'",
        "row 7 (subject_id=?): empty 'subject_id'",
    ):
        assert expected in message
    assert "row 1 " not in message


def test_a_bad_manifest_stops_the_command_before_any_generation(tmp_path, capsys):
    from jobs.cli import main

    write_benchmark(tmp_path)
    (tmp_path / "bad.csv").write_text("subject_id,set,class,reference\nann,celebrity,person,nope.png\nbob,object,dragon,coffee.png\n")
    code = main(["evaluate", "--benchmark", str(tmp_path / "bad.csv"), "--output-dir", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "2 problem(s)" in err and "nope.png' does not exist" in err and "class 'dragon'" in err and "nothing was generated" in err
    assert not (tmp_path / "out").exists()


# --- resumable outputs ------------------------------------------------------------------------


def test_an_item_counts_only_when_every_file_is_whole(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (16, 32, 32, 3), dtype=np.uint8)
    stem = tmp_path / "celebrity" / "ann" / "p00_s0"
    assert not is_complete(stem)
    write_item(stem, frames, {"prompt": "x"}, fps=8)
    assert is_complete(stem)
    sidecar = json.loads(stem.with_suffix(".json").read_text())
    assert set(sidecar["files"]) == {"p00_s0.mp4", "p00_s0.gif", "p00_s0.mkv"} and not list(stem.parent.glob(".*partial*"))

    data = stem.with_suffix(".mp4").read_bytes()
    stem.with_suffix(".mp4").write_bytes(data[: len(data) // 2])  # a copy cut short
    assert not is_complete(stem)
    stem.with_suffix(".mp4").write_bytes(data)
    assert is_complete(stem)
    stem.with_suffix(".mkv").write_bytes(b"")  # the lossless frames lost
    assert not is_complete(stem)
    write_item(stem, frames, {"prompt": "x"}, fps=8)
    stem.with_suffix(".gif").unlink()
    assert not is_complete(stem)
    write_item(stem, frames, {"prompt": "x"}, fps=8, lossless=False)  # only when no metric reads it
    assert set(json.loads(stem.with_suffix(".json").read_text())["files"]) == {"p00_s0.mp4", "p00_s0.gif"}
    stem.with_suffix(".json").write_text("{")  # a sidecar cut short
    assert not is_complete(stem)


def test_an_output_dir_of_another_method_is_refused(tmp_path):
    from pipelines.evaluation.config import EvaluationConfig, GenerationSettings, MethodConfig
    from pipelines.evaluation.evaluate import check_output_dir

    config = EvaluationConfig(benchmark="b.csv", output_dir=str(tmp_path), generation=GenerationSettings(num_inference_steps=2))
    check_output_dir(config)
    check_output_dir(dataclasses.replace(config, generation=GenerationSettings(num_inference_steps=2, device="cuda")))
    with pytest.raises(ValueError, match="another method or sampler settings"):
        check_output_dir(dataclasses.replace(config, method=MethodConfig(checkpoint="/ckpt/step_10")))
    with pytest.raises(ValueError, match="another method or sampler settings"):
        check_output_dir(dataclasses.replace(config, generation=GenerationSettings(num_inference_steps=30)))


def test_config_errors_name_the_field():
    from pipelines.configs import validate
    from pipelines.evaluation.config import EvaluationConfig, MethodConfig

    with pytest.raises(ValueError, match="method.kind: got 'dreambooth'"):
        validate(MethodConfig, {"kind": "dreambooth"}, where="method")
    with pytest.raises(ValueError, match="method.videos"):
        MethodConfig(kind="imported")
    with pytest.raises(ValueError, match="method.face"):
        MethodConfig(kind="ip-adapter-faceid")
    with pytest.raises(ValueError, match=r"sets\[1\]: got 'animals'"):
        validate(EvaluationConfig, {"benchmark": "b.csv", "output_dir": "o", "sets": ["celebrity", "animals"]})
    with pytest.raises(ValueError, match="Invalid sets"):
        EvaluationConfig(benchmark="b.csv", output_dir="o", sets=[])
    with pytest.raises(ValueError, match="score_file"):
        EvaluationConfig(benchmark="b.csv", output_dir="o", score_file="webm")


def test_newest_checkpoint_is_the_one_ray_train_registered(tmp_path):
    from pipelines.evaluation.nightly import newest_checkpoint

    for step in (2, 4, 6):
        (tmp_path / f"checkpoint_{step:08d}" / "ema").mkdir(parents=True)
        (tmp_path / f"checkpoint_{step:08d}" / "videomaker.json").write_text("{}")
    (tmp_path / "checkpoint_00000004" / "ema" / "videomaker.json").write_text("{}")
    assert Path(newest_checkpoint(tmp_path)).name == "checkpoint_00000006"  # no record: highest complete folder
    record = {"latest_checkpoint_result": {"checkpoint_dir_name": "checkpoint_00000004"}}
    (tmp_path / "checkpoint_manager_snapshot.json").write_text(json.dumps(record))
    assert Path(newest_checkpoint(tmp_path)).name == "checkpoint_00000004"  # 6 is not registered yet
    assert newest_checkpoint(tmp_path, ema=True) == str(tmp_path / "checkpoint_00000004" / "ema")
    with pytest.raises(FileNotFoundError, match="no checkpoint yet"):
        newest_checkpoint(tmp_path / "checkpoint_00000002" / "ema")


# --- the whole job ----------------------------------------------------------------------------


def evaluation_config(root: Path, backends) -> Path:
    """Tiny preset, 2 prompts x 2 seeds per subject, tiny metric models; flow by OpenCV (RAFT needs >= 128 px)."""
    config = {
        "method": {"kind": "videomaker", "preset": "tiny"},
        "seeds": [0, 1],
        "prompts_per_subject": 2,
        "generation": {"num_inference_steps": 2},
        "generators": {"num_cpus": 0.5, "batch_size": 2},
        "backends": {**dataclasses.asdict(backends), "flow": {"name": "opencv", "options": {}}},
        "scorers": {"num_cpus": 0.5, "batch_size": 8},
        "mlflow_tracking_uri": f"sqlite:///{root}/mlflow.db",
    }
    path = root / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def evaluate_command(config: Path, benchmark: Path, output: Path, run_name: str, *sets: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jobs.cli",
        "evaluate",
        "--config",
        str(config),
        "--benchmark",
        str(benchmark),
        "--output-dir",
        str(output),
        "--run-name",
        run_name,
        "--no-progress",
        *[a for s in sets for a in ("--set", s)],
    ]


def sidecars(output: Path) -> list[Path]:
    return sorted((output / "videos").glob("*/*/*.json"))


def degraded_checkpoint(train_run: Path) -> Path:
    """A 'training run' whose newest checkpoint has its motion modules scrambled (a broken model)."""
    import torch

    from videomaker.checkpoint import save_checkpoint
    from videomaker.loading import load_components
    from videomaker.pisa import PISASwitches, install_pisa

    unet = load_components("tiny").unet
    install_pisa(unet, PISASwitches(), num_frames=17)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if "motion_modules" in name:
                parameter.add_(torch.randn_like(parameter) * 2.0)
    save_checkpoint(train_run / "checkpoint_00000002", unet, preset="tiny", switches=PISASwitches(), global_step=2)
    return train_run / "checkpoint_00000002"


@pytest.mark.slow
def test_evaluation_resumes_logs_to_mlflow_compares_and_gates(tmp_path, tiny_metric_models, capsys):
    """After the killed first run, the commands run in this process, sharing one local Ray cluster."""
    import ray

    try:
        _evaluate_resume_compare_and_gate(tmp_path, tiny_metric_models, capsys)
    finally:
        ray.shutdown()


def _evaluate_resume_compare_and_gate(tmp_path, tiny_metric_models, capsys):
    import mlflow

    from jobs.cli import main

    benchmark = write_benchmark(tmp_path / "bench")
    config = evaluation_config(tmp_path, tiny_metric_models)
    base = tmp_path / "base"

    # 1. Kill the job once some videos are done, leave a cut-short file behind, and re-run.
    job = subprocess.Popen(
        evaluate_command(config, benchmark, base, "base", "generators.batch_size=1"),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while len(sidecars(base)) < 6 and time.time() < deadline and job.poll() is None:
        time.sleep(0.05)
    kill_tree(job)  # with the generator actors, which could otherwise finish the item in hand
    done = {p: p.stat().st_mtime_ns for p in sidecars(base)}
    assert 6 <= len(done) < 24, f"{len(done)} items were done when the job was killed"
    victim = next(iter(done))
    victim.with_suffix(".gif").write_bytes(victim.with_suffix(".gif").read_bytes()[:100])
    expected_new = 24 - len(done) + 1

    capsys.readouterr()
    assert main(evaluate_command(config, benchmark, base, "base")[3:]) == 0
    assert f"videos: {expected_new} new, {len(done) - 1} already done, 0 failed" in capsys.readouterr().out
    assert len(sidecars(base)) == 24 and all(is_complete(p.with_suffix("")) for p in sidecars(base))
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in done.items() if p != victim)  # finished items untouched
    assert victim.stat().st_mtime_ns != done[victim]  # the cut-short one was made again
    assert not list(base.rglob("*partial*"))

    # 2. MLflow: a parent run, a nested run per set with its metrics, table, videos and grid page.
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("videomaker-eval").experiment_id
    (parent,) = client.search_runs([experiment], "tags.`videomaker.job` = 'evaluate'")
    assert parent.data.params["N"] == "24" and parent.data.params["seeds"] == "[0, 1]"
    assert parent.data.params["method"] == "videomaker" and parent.data.params["preset"] == "tiny"
    assert parent.data.params["face_protocol"] == "corrected" and parent.data.tags["videomaker.face_protocol"] == "corrected"
    assert (parent.data.params["embedding_frames"], parent.data.params["dd_frames"]) == ("lossless", "gif")
    assert len(parent.data.params["backend.clip.digest"]) >= 16 and "backend.dino.digest" in parent.data.params
    assert {f"{s}.clip_t" for s in ("celebrity", "non_celebrity", "object")} <= set(parent.data.metrics)
    assert "object.face_sim" not in parent.data.metrics and "celebrity.face_sim" in parent.data.metrics
    # The resolved config, every key, beside the outputs and in the run; it reads back as the config that ran.
    from pipelines.configs import validate
    from pipelines.evaluation.config import EvaluationConfig

    resolved = validate(EvaluationConfig, yaml.safe_load((base / "config.yaml").read_text()))
    assert (resolved.seeds, resolved.method.preset, resolved.benchmark) == ([0, 1], "tiny", str(benchmark))
    assert "config.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    logged_config = Path(client.download_artifacts(parent.info.run_id, "config.yaml", str(tmp_path / "logged"))).read_text()
    assert_whole_config_logged(parent.data.params, logged_config, summarised=("method.switches",))  # switches: one JSON value
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(c.data.tags["videomaker.set"] for c in children) == ["celebrity", "non_celebrity", "object"]
    samples = __import__("pyarrow.parquet", fromlist=["x"]).read_table(base / "scores" / "samples.parquet").to_pylist()
    # each record names the file each metric read: the lossless frames for the embeddings, the GIF for DD
    assert all(
        s["video"].endswith(".mkv") and s["dd_video"].endswith(".gif") and s["face_protocol"] == "corrected" and s["dd_frames"] == 16
        for s in samples
    )
    for child in children:
        set_name = child.data.tags["videomaker.set"]
        assert child.data.metrics["videos"] == 8 and child.data.metrics["subjects"] == 2
        own = [s for s in samples if s["set"] == set_name]
        mean_of_subjects = np.mean(
            [np.mean([s["clip_t"] for s in own if s["subject_id"] == sub]) for sub in {s["subject_id"] for s in own}]
        )
        assert child.data.metrics["clip_t"] == pytest.approx(mean_of_subjects)
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"samples.json", "samples.parquet", "videos"} <= artifacts
        table = json.loads(Path(client.download_artifacts(child.info.run_id, "samples.json", str(tmp_path / set_name))).read_text())
        assert len(table["data"]) == 8 and {"subject_id", "prompt", "seed", "clip_t"} <= set(table["columns"])
        grid = Path(client.download_artifacts(child.info.run_id, "videos/grid.html", str(tmp_path / set_name))).read_text()
        assert grid.count("<td><a href=") == 8 and grid.count("<h2>") == 2
        videos = [a.path for a in client.list_artifacts(child.info.run_id, f"videos/{own[0]['subject_id']}")]
        assert sum(p.endswith(".mp4") for p in videos) == 4 and sum(p.endswith(".gif") for p in videos) == 4
        assert not any(p.endswith(".mkv") for p in videos)  # the lossless copies stay in output_dir

    # 3. Another code base's videos enter by import and score exactly like ours (one set keeps it short).
    rows = [
        {"set": s["set"], "subject_id": s["subject_id"], "prompt": s["prompt"], "seed": s["seed"], "video": s["video"]}
        for s in samples
        if s["set"] == "object"
    ]
    (tmp_path / "imported.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code = main(
        [
            "evaluate",
            "--config",
            str(config),
            "--benchmark",
            str(benchmark),
            "--output-dir",
            str(tmp_path / "imp"),
            "--run-name",
            "imported",
            "--no-progress",
            "--set",
            "method.kind=imported",
            "--set",
            f"method.videos={tmp_path / 'imported.jsonl'}",
            "--set",
            "method.name=other-method",
            "--set",
            "sets=[object]",
        ]
    )
    assert code == 0

    # 4. Compare: the table with N and the paper's rows, zero deltas for identical videos, a chart.
    capsys.readouterr()
    assert (
        main(
            [
                "compare",
                "base",
                "imported",
                "--mlflow-tracking-uri",
                f"sqlite:///{tmp_path}/mlflow.db",
                "--output-dir",
                str(tmp_path / "cmp"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "base" in out and "imported" in out and "VideoMaker (paper)" in out and "0.2586" in out
    report = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    deltas = report["deltas"]["imported"]
    assert {d["set"] for d in deltas} == {"object"}  # the only set both runs scored
    # the imported item has only its one file (the lossless frames): the embeddings match, DD read that file too
    assert all(d["delta"] == pytest.approx(0.0, abs=1e-9) for d in deltas if d["metric"] != "dd")
    imported = __import__("pyarrow.parquet", fromlist=["x"]).read_table(tmp_path / "imp" / "scores" / "samples.parquet").to_pylist()
    assert all(r["video"] == r["dd_video"] and r["dd_video"].endswith(".mkv") for r in imported)
    assert all(d["n_pairs"] == 8 for d in deltas if d["metric"] != "face_sim")  # Face Sim pairs only videos with a face
    assert (tmp_path / "cmp" / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # 5. Nightly: the newest checkpoint of a deliberately degraded run (scrambled motion modules) fails the
    # gate. With random tiny models no metric is bound to fall by much, so every tolerance is 0 and the test
    # checks that each metric the gate names did fall, by a paired computation written here.
    train_run = tmp_path / "train" / "tiny-run"
    degraded_checkpoint(train_run)
    tolerances = [a for m in ("clip_t", "face_sim", "clip_i", "dino_i", "t_cons", "dd") for a in ("--tolerance", f"{m}=0")]
    code = main(
        [
            "nightly",
            "--config",
            str(config),
            "--benchmark",
            str(benchmark),
            "--output-dir",
            str(tmp_path / "nightly"),
            "--train-run",
            str(train_run),
            "--baseline",
            "base",
            "--no-progress",
            "--set",
            "sets=[celebrity]",
            *tolerances,
        ]
    )
    nightly = capsys.readouterr().out
    assert code == 3, nightly[-3000:]  # a regression, told apart from a crash (1) and bad input (2)
    assert "NIGHTLY FAIL" in nightly and " fell by " in nightly
    (candidate,) = client.search_runs([experiment], "tags.`nightly.verdict` = 'fail'")
    assert candidate.info.run_name == "nightly-tiny-run-checkpoint_00000002"
    assert candidate.data.tags["nightly.baseline_run_id"] == parent.info.run_id
    failed = candidate.data.tags["nightly.failed_metrics"].split(",")
    read = __import__("pyarrow.parquet", fromlist=["x"]).read_table
    after = {
        (s["set"], s["subject_id"], s["prompt"], s["seed"]): s
        for s in read(tmp_path / "nightly" / "tiny-run-checkpoint_00000002" / "scores" / "samples.parquet").to_pylist()
    }
    for name in failed:
        set_name, metric = name.split(".")
        field = "dd_dynamic" if metric == "dd" else metric
        pairs = [(s, after[(s["set"], s["subject_id"], s["prompt"], s["seed"])]) for s in samples if s["set"] == set_name]
        pairs = [(b, a) for b, a in pairs if b[field] is not None and a[field] is not None]
        by_subject = {}
        for b, a in pairs:
            by_subject.setdefault(b["subject_id"], []).append(float(a[field]) - float(b[field]))
        fall = (
            np.mean([np.mean(v) for v in by_subject.values()]) if metric != "dd" else np.mean([d for v in by_subject.values() for d in v])
        )
        assert fall < 0, f"{name} was named but changed by {fall}"
        assert f"{set_name} " in nightly and METRIC_LABELS[metric] in nightly

    # 6. A metric group added to the finished evaluation: no video is made again, the paper's units come from the
    # score cache its scoring left (<output>/score_cache) and only the new group's metrics are computed.
    before = {(s["set"], s["subject_id"], s["prompt"], s["seed"]): s for s in samples}
    capsys.readouterr()
    assert main(evaluate_command(config, benchmark, base, "base-vbench", "sets=[object]", "metric_groups=[vbench]")[3:]) == 0
    assert "videos: 0 new, 8 already done, 0 failed" in capsys.readouterr().out
    added = read(base / "scores" / "samples.parquet").to_pylist()
    assert len(added) == 8 and all(r["cached_units"] == "clip,dino,dd" and r["temporal_flickering"] is not None for r in added)
    for r in added:
        was = before[(r["set"], r["subject_id"], r["prompt"], r["seed"])]
        assert (r["clip_t"], r["dino_i"], r["dd_pair_scores"]) == (was["clip_t"], was["dino_i"], was["dd_pair_scores"])


def test_ip_adapter_faceid_method_takes_its_face_from_the_metrics_face_backend(tmp_path, tiny_metric_models, reference_image):
    """The evaluation's FaceID method: insightface (through metrics/) embeds the reference, diffusers generates."""
    from pipelines.evaluation.config import GenerationSettings, MethodConfig
    from pipelines.evaluation.methods import VideoGenerator
    from tiny_models import TINY_IP_ADAPTER_WEIGHT_NAMES, save_tiny_ip_adapter

    weights = save_tiny_ip_adapter(tmp_path / "faceid", "ip-adapter-faceid")
    method = MethodConfig(
        kind="ip-adapter-faceid",
        weights=str(weights),
        weight_name=TINY_IP_ADAPTER_WEIGHT_NAMES["ip-adapter-faceid"],
        subfolder="",
        face=tiny_metric_models.face,
    )
    generator = VideoGenerator(method, GenerationSettings(num_inference_steps=2))
    batch = generator([reference_image], ["A person wearing sunglasses."], [0], "blurry")
    assert batch.frames.shape == (1, 16, 64, 64, 3) and batch.frames.dtype == np.uint8
    assert batch.provenance["kind"] == "ip-adapter-faceid" and batch.provenance["variant"] == "ip-adapter-faceid"
    black = np.zeros((128, 128, 3), np.uint8)  # the tiny detector finds faces only in bright cells
    with pytest.raises(ValueError, match="reference 0 of this batch has none"):
        generator([black], ["A person."], [0], "blurry")


def test_the_paper_config_loads_with_spec_defaults():
    from jobs.config import load_config
    from pipelines.evaluation.config import EvaluationConfig

    config = load_config(EvaluationConfig, "jobs/configs/eval_paper.yaml", ["benchmark=b.csv", "output_dir=o"])
    assert (config.method.preset, config.seeds, config.sets) == ("paper", [0, 1, 2, 3, 4], ["celebrity", "non_celebrity", "object"])
    assert (config.generation.num_inference_steps, config.generation.guidance_scale, config.generation.fps) == (30, 8.0, 8)
    assert config.backends.flow.options["num_flow_updates"] == 20 and config.generators.num_gpus == 1
