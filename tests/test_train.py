"""The training job on a local Ray cluster: a real preprocess dataset, real kills, real MLflow."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from jobs.config import load_config
from pipelines.tracking import flatten_params
from pipelines.training.config import ReferenceAugmentation, TrainConfig
from pipelines.training.data import augment_reference
from pipelines.training.loop import step_seed
from processes import kill_tree
from tracking_checks import assert_whole_config_logged

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_config_defaults_are_the_papers_recipe():
    config = TrainConfig(dataset="d", storage_path="s")
    optimizer = config.optimizer
    assert (optimizer.lr, optimizer.weight_decay, optimizer.max_grad_norm, config.data.batch_size_per_worker) == (1e-5, 1e-2, 1.0, 1)
    assert (config.max_steps, config.seed, config.checkpoints.every_steps, config.resources.num_workers) == (150_000, 42, 10_000, 4)
    assert config.precision.mixed_precision == "bf16" and config.precision.gradient_checkpointing
    assert config.data.augmentation == ReferenceAugmentation(True, 0.5, 30.0, 0.1, (0.6, 1.2))
    assert flatten_params(config)["model.switches.update_motion"] == "True"
    assert config.run_dir == "s/videomaker"


@pytest.mark.parametrize(
    "key, value",
    [
        ("max_steps", "0"),
        ("precision.mixed_precision", "fp8"),
        ("precision.mixed_precision", "no"),
        ("optimizer.on_nonfinite_loss", "ignore"),
        ("optimizer.ema_decay", "1.5"),
        ("optimizer.grad_accumulation", "0"),
        ("checkpoints.keep", "0"),
        ("optimizer.lr", "fast"),
    ],
)
def test_bad_config_values_are_refused_naming_the_dotted_key(key, value):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_config(TrainConfig, None, ["dataset=d", "storage_path=s", f"{key}={value}"])


def test_shipped_training_configs_load_with_their_groups():
    tiny = load_config(TrainConfig, "jobs/configs/train_tiny.yaml", ["dataset=d", "storage_path=s"])
    assert (tiny.model.preset, tiny.precision.mixed_precision, tiny.resources.use_gpu, tiny.checkpoints.every_steps) == (
        "tiny",
        "no",
        False,
        2,
    )
    paper = load_config(TrainConfig, "jobs/configs/train_paper.yaml", ["dataset=d", "storage_path=s"])
    assert (paper.model.preset, paper.resources.num_workers, paper.precision.mixed_precision, paper.max_steps) == (
        "paper",
        4,
        "bf16",
        150_000,
    )


def test_learning_rate_is_a_function_of_the_step_with_linear_warmup():
    from videomaker.training import lr_at

    # Linear warm-up to lr over warmup_steps optimizer steps (step 1 is the first), constant after.
    assert [lr_at(step, lr=8e-5, warmup_steps=4) for step in range(1, 7)] == pytest.approx([2e-5, 4e-5, 6e-5, 8e-5, 8e-5, 8e-5])
    assert lr_at(1, lr=1e-5) == lr_at(10**6, lr=1e-5) == 1e-5
    # The same learning rates as the LambdaLR scheduler earlier runs kept in their checkpoints, step for step.
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=3e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: min(1.0, (k + 1) / 5))
    for step in range(1, 12):
        assert lr_at(step, lr=3e-4, warmup_steps=5) == optimizer.param_groups[0]["lr"], step
        optimizer.step()
        scheduler.step()
    with pytest.raises(ValueError, match="from 1"):
        lr_at(0, lr=1e-5, warmup_steps=2)


def test_reference_augmentation_is_seeded_and_fills_with_white():
    image = np.zeros((64, 64, 3), np.uint8)
    config = ReferenceAugmentation(flip_p=0.0, rotation_deg=30, translate=0.1, scale=(0.6, 0.6))
    first = augment_reference(image, config, torch.Generator().manual_seed(1))
    again = augment_reference(image, config, torch.Generator().manual_seed(1))
    assert torch.equal(first, again) and first.shape == (3, 64, 64)
    assert first.max() == 1.0 and first.min() == -1.0  # shrunk black image on a white fill
    off = augment_reference(image, ReferenceAugmentation(enabled=False), torch.Generator().manual_seed(1))
    assert torch.equal(off, torch.full((3, 64, 64), -1.0))
    assert step_seed(42, 3, 0, 0) != step_seed(42, 3, 1, 0) != step_seed(42, 4, 0, 0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A real preprocess output (5 clips at 64 px, with latents) made by the preprocess job."""
    root = tmp_path_factory.mktemp("train_data")
    script = (
        "from pipelines.preprocess.synthetic import make_corpus\n"
        "from pipelines.preprocess.config import ClipsConfig, LatentsConfig, PreprocessConfig\n"
        "from pipelines.preprocess.dataflow import run_preprocess\n"
        f"c = make_corpus('{root}/corpus', num_faces=3, num_objects=2, broken=False, frames=60, size=(128, 96), seed=0)\n"
        f"r = run_preprocess(PreprocessConfig(input=str(c.manifest_path), output_dir='{root}/ds', clips=ClipsConfig(size=64),\n"
        "                                  latents=LatentsConfig(encode=True)), progress=False)\n"
        "assert r.statuses['ok'] == 5, r.statuses\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=600, capture_output=True)
    return root / "ds"


def train_command(dataset, storage, run_name, *sets):
    return [
        sys.executable,
        "-m",
        "jobs.cli",
        "train",
        "--config",
        "jobs/configs/train_tiny.yaml",
        "--dataset",
        str(dataset),
        "--storage-path",
        str(storage),
        "--run-name",
        run_name,
        "--mlflow-tracking-uri",
        f"sqlite:///{storage}/mlflow.db",
        *[arg for s in sets for arg in ("--set", s)],
    ]


EVERY = ("tracking.registered_model=vm-every",)
FINAL_ONLY = ("tracking.registered_model=vm-final", "tracking.register_checkpoints=final")


def start(command):
    return subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def checkpoints(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.glob("checkpoint_*") if p.is_dir())


def registered_step(run_dir: Path) -> int | None:
    """Step of the latest checkpoint Ray Train has registered (what a re-run resumes from)."""
    import json

    try:
        latest = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())["latest_checkpoint_result"]
    except (OSError, ValueError, KeyError):
        return None
    return int(latest["checkpoint_dir_name"].split("_")[1]) if latest else None


def wait_for_registered_checkpoint(job, run_dir: Path, timeout_s: float = 500) -> None:
    deadline = time.time() + timeout_s
    while registered_step(run_dir) is None and time.time() < deadline and job.poll() is None:
        time.sleep(0.05)


def losses_by_step(storage: Path, run_name: str) -> dict[int, float]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{storage}/mlflow.db")
    (run,) = client.search_runs(
        client.get_experiment_by_name("videomaker-train").experiment_id, filter_string=f"tags.`videomaker.run_name` = '{run_name}'"
    )
    history = sorted(client.get_metric_history(run.info.run_id, "last_loss"), key=lambda m: m.timestamp)
    return {m.step: m.value for m in history}  # a step logged again after a resume keeps its latest value


@pytest.mark.slow
def test_killed_job_resumes_with_the_same_losses_and_final_weights(dataset, tmp_path):
    sets = (
        "resources.num_workers=1",
        "max_steps=12",
        "checkpoints.every_steps=2",
        "checkpoints.keep=2",
        "model.switches.update_motion=false",
    )
    # The uninterrupted reference runs beside the job that gets killed (its own process and Ray cluster):
    # their start-ups are mostly single-threaded imports, so on 2 cores this costs little extra time.
    with open(tmp_path / "uninterrupted.log", "w") as reference_log:
        reference = subprocess.Popen(
            train_command(dataset, tmp_path, "uninterrupted", *sets, *FINAL_ONLY),
            start_new_session=True,
            stdout=reference_log,
            stderr=subprocess.STDOUT,
        )
    job = start(train_command(dataset, tmp_path, "killed", *sets, *EVERY))
    wait_for_registered_checkpoint(job, tmp_path / "killed")
    kill_tree(job)  # the driver, its Ray cluster and the training workers
    killed_at = registered_step(tmp_path / "killed")
    assert killed_at is not None and killed_at < 12, "the job finished before it could be killed"
    assert reference.wait(timeout=600) == 0, (tmp_path / "uninterrupted.log").read_text()[-3000:]

    resumed = subprocess.run(train_command(dataset, tmp_path, "killed", *sets, *EVERY), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    expected, got = losses_by_step(tmp_path, "uninterrupted"), losses_by_step(tmp_path, "killed")
    assert sorted(expected) == list(range(1, 13))
    for step in range(killed_at + 1, 13):
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-7), step
    final_a = load_file(tmp_path / "uninterrupted" / "checkpoint_00000012" / "trainable.safetensors")
    final_b = load_file(tmp_path / "killed" / "checkpoint_00000012" / "trainable.safetensors")
    assert final_a.keys() == final_b.keys()
    for name in final_a:
        torch.testing.assert_close(final_b[name], final_a[name], rtol=1e-6, atol=1e-7)
    assert len(checkpoints(tmp_path / "killed")) == 2  # keep_checkpoints

    # Registered versions: every checkpoint of the killed run once (the resume made none twice, and
    # those `keep` deleted stay registered), only the final one of the other.
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    every = sorted(int(v.tags["videomaker.step"]) for v in client.search_model_versions("name = 'vm-every'"))
    assert every == [2, 4, 6, 8, 10, 12]
    (final,) = client.search_model_versions("name = 'vm-final'")
    assert final.tags["videomaker.step"] == "12" and final.tags["videomaker.run_name"] == "uninterrupted"
    registered = next(v for v in client.search_model_versions("name = 'vm-every'") if v.tags["videomaker.step"] == "12")
    weights = Path(client.download_artifacts(registered.run_id, "checkpoints/checkpoint_00000012", str(tmp_path / "v12")))
    assert load_file(weights / "trainable.safetensors").keys() == final_b.keys()
    for name in final_b:
        torch.testing.assert_close(load_file(weights / "trainable.safetensors")[name], final_b[name], rtol=0, atol=0)

    # The resumed run drew the same windows and references as the uninterrupted one, step for step.
    uninterrupted, resumed_draws = draws(tmp_path / "uninterrupted"), draws(tmp_path / "killed")
    assert [d["step"] for d in uninterrupted] == list(range(1, 13))
    assert [d for d in resumed_draws if d["step"] > killed_at] == [d for d in uninterrupted if d["step"] > killed_at]
    # 12 steps over 5 clips: each clip is drawn in epochs 0 and 1, with a new window or reference.
    stored = stored_clips(dataset)
    by_clip = {}
    for d in uninterrupted:
        span = stored[d["sample_id"]]
        first = span["frame_indices"].index(d["frame_indices"][0])
        assert d["frame_indices"] == span["frame_indices"][first : first + 16]  # 16 consecutive stored frames
        assert d["reference_frame_index"] in span["reference_frame_indices"]
        by_clip.setdefault(d["sample_id"], {})[d["epoch"]] = (d["frame_indices"][0], d["reference_frame_index"])
    assert len(by_clip) == 5 and all({0, 1} <= set(epochs) for epochs in by_clip.values())
    changed = [c for c, epochs in by_clip.items() if epochs[0] != epochs[1]]
    assert len(changed) >= 4, by_clip
    assert any(e[0][0] != e[1][0] for e in by_clip.values()) and any(e[0][1] != e[1][1] for e in by_clip.values())
    order = [d["sample_id"] for d in uninterrupted]
    assert order[:5] != order[5:10] and sorted(order[:5]) == sorted(order[5:10])  # each epoch in its own order

    # update_motion=false: only the PISA attention layers were trained, and they did change.
    from videomaker.loading import load_components
    from videomaker.trainable import select_trainable

    initial = dict(load_components("tiny").unet.named_parameters())
    assert set(final_a) == set(select_trainable(load_components("tiny").unet, update_motion=False))
    assert not any("motion_modules" in name for name in final_a)
    assert all(not torch.equal(final_a[name], initial[name].detach()) for name in final_a)


@pytest.mark.slow
def test_the_ray_job_trains_through_videomaker_training_steps_and_saves_its_resolved_config(dataset, tmp_path):
    """Every Ray worker of the job records the calls of `videomaker.training.micro_step` / `optimizer_step`
    (tests/step_spy.py, installed by a worker setup hook): the losses and gradient norms the job reports
    are exactly what those calls returned."""
    import json

    import mlflow
    import ray
    import yaml

    from pipelines.configs import to_yaml, validate
    from pipelines.training.trainer import run_training
    from step_spy import SPY_FILE_ENV

    spy = tmp_path / "calls.jsonl"
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    config = load_config(
        TrainConfig,
        "jobs/configs/train_tiny.yaml",
        [
            f"dataset={dataset}",
            f"storage_path={tmp_path / 'runs'}",
            "run_name=spied",
            "max_steps=2",
            "resources.num_workers=1",
            "optimizer.grad_accumulation=2",
            "checkpoints.every_steps=2",
            f"tracking.mlflow_tracking_uri={tracking}",
        ],
    )
    tests_dir = str(Path(__file__).resolve().parent)
    ray.init(
        runtime_env={
            "worker_process_setup_hook": "step_spy.install",
            "env_vars": {SPY_FILE_ENV: str(spy), "PYTHONPATH": os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")])},
        }
    )
    try:
        result = run_training(config)
    finally:
        ray.shutdown()
    assert result.error is None, result.error
    calls = [json.loads(line) for line in spy.read_text().splitlines()]
    assert [c["call"] for c in calls] == ["micro_step", "micro_step", "optimizer_step"] * 2  # 2 micro-batches per step

    client = mlflow.MlflowClient(tracking_uri=tracking)
    (run,) = client.search_runs(client.get_experiment_by_name("videomaker-train").experiment_id)
    history = {
        name: [m.value for m in sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: m.step)]
        for name in ("loss", "last_loss", "grad_norm")
    }
    micro_losses = [c["value"] for c in calls if c["call"] == "micro_step"]
    assert history["last_loss"] == pytest.approx([micro_losses[1], micro_losses[3]], rel=1e-12)
    assert history["loss"] == pytest.approx([np.mean(micro_losses[:2]), np.mean(micro_losses[2:])], rel=1e-12)
    assert history["grad_norm"] == pytest.approx([c["value"] for c in calls if c["call"] == "optimizer_step"], rel=1e-12)

    # The resolved config: beside the outputs, in the checkpoint and in MLflow, each validating back to it.
    run_dir = tmp_path / "runs" / "spied"
    saved = {
        "run": (run_dir / "config.yaml").read_text(),
        "checkpoint": (run_dir / "checkpoint_00000002" / "config.yaml").read_text(),
        "mlflow": mlflow.artifacts.load_text(f"{run.info.artifact_uri}/config.yaml"),
    }
    for where, text in saved.items():
        assert validate(TrainConfig, yaml.safe_load(text)) == config, where
        assert text == to_yaml(config), where
    assert_whole_config_logged(run.data.params, saved["mlflow"])
    assert yaml.safe_load(saved["checkpoint"])["optimizer"]["grad_accumulation"] == 2
    assert run.data.params["optimizer.grad_accumulation"] == "2" and run.data.params["data.reference_mode"] == "shp"


def draws(run_dir: Path) -> list[dict]:
    """What rank 0 trained on, step by step, from the run's draw records."""
    import json

    records = [
        json.loads(line)
        for path in sorted((run_dir / "draws" / "rank-0000").glob("step-*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    return sorted(records, key=lambda d: (d["step"], d["micro"]))


def stored_clips(dataset: Path) -> dict[str, dict]:
    import pyarrow.parquet as pq

    table = pq.read_table(dataset / "data", columns=["sample_id", "frame_indices", "reference_frame_indices"])
    return {row["sample_id"]: row for row in table.to_pylist()}


def ray_train_worker_pids(job_pid: int) -> list[int]:
    """Training workers of this job's own Ray cluster (other tests may run theirs beside it)."""

    def descends_from_job(pid: int) -> bool:
        while pid > 1:
            if pid == job_pid:
                return True
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        return False

    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"RayTrainWorker" in (proc / "cmdline").read_bytes() and descends_from_job(int(proc.name)):
                pids.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


@pytest.mark.slow
def test_two_worker_bf16_run_survives_a_killed_worker_logs_to_mlflow_and_loads_for_inference(dataset, tmp_path):
    import mlflow

    from videomaker.pipeline import VideoMakerPipeline
    from videomaker.trainable import select_trainable

    job = start(
        train_command(
            dataset,
            tmp_path,
            "two",
            "max_steps=10",
            "checkpoints.every_steps=2",
            "optimizer.ema_decay=0.9",
            "validation.every_steps=10",
            "validation.inference_steps=2",
            "precision.mixed_precision=bf16",
            "precision.gradient_checkpointing=true",
            "optimizer.grad_accumulation=2",
        )
    )
    wait_for_registered_checkpoint(job, tmp_path / "two")
    workers = ray_train_worker_pids(job.pid)
    assert len(workers) == 2, workers
    os.kill(workers[-1], signal.SIGKILL)
    output, _ = job.communicate(timeout=600)
    assert job.returncode == 0, output[-4000:]
    final = tmp_path / "two" / "checkpoint_00000010"
    assert final.is_dir(), output[-3000:]

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs(client.get_experiment_by_name("videomaker-train").experiment_id)
    assert run.data.params["resources.num_workers"] == "2" and run.data.params["optimizer.lr"] == "1e-05"
    for metric in ("loss", "loss_video", "loss_reg", "lr", "grad_norm", "samples_per_s", "step_time_s"):
        assert metric in run.data.metrics, metric
    assert run.data.tags["checkpoint.latest"].endswith("checkpoint_00000010")
    videos = [a.path for a in client.list_artifacts(run.info.run_id, "validation/step_00000010")]
    assert sorted(Path(v).name for v in videos) == ["00.gif", "00.mp4"]

    weights = load_file(final / "trainable.safetensors")
    pipe = VideoMakerPipeline.from_preset("tiny", checkpoint=final)
    assert set(weights) == set(select_trainable(pipe.components.unet, update_motion=True))
    assert (final / "ema" / "trainable.safetensors").is_file()
    video = pipe([np.full((64, 64, 3), 200, np.uint8)], ["A person."], seeds=[0], num_inference_steps=2, progress=False)
    assert video.frames.shape == (1, 16, 64, 64, 3)


def encoded(image: np.ndarray, fmt: str) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


def test_a_sample_that_fails_to_decode_is_recorded_and_dropped_not_replaced(tmp_path):
    import json

    import pyarrow as pa

    from pipelines.training.data import count_decode_failures, decode_samples

    frame = np.full((8, 8, 3), 128, np.uint8)
    good = {"sample_id": "good", "caption": "A person.", "frames": [encoded(frame, "JPEG")] * 16, "reference_png": encoded(frame, "PNG")}
    rows = [
        good,
        {**good, "sample_id": "corrupt", "frames": [b"not a jpeg"] * 16},
        {**good, "sample_id": "short", "frames": [encoded(frame, "JPEG")] * 9},
    ]
    out = decode_samples(pa.Table.from_pylist(rows), use_latents=False, failures_dir=str(tmp_path / "failures"))
    assert list(out["sample_id"]) == ["good"] and out["frames"].shape == (1, 16, 3, 8, 8)
    assert out["frames"].min() >= -1 and out["frames"].max() <= 1
    assert count_decode_failures(str(tmp_path / "failures")) == 2
    reasons = {json.loads(p.read_text())["sample_id"]: json.loads(p.read_text())["error"] for p in (tmp_path / "failures").iterdir()}
    assert "9 frames, expected at least 16" in reasons["short"] and "corrupt" in reasons


def test_non_finite_loss_stops_naming_the_step_or_is_skipped_a_bounded_number_of_times():
    from pipelines.training.loop import MAX_CONSECUTIVE_SKIPS, should_skip_batch

    finite, nan, inf = torch.tensor(0.5), torch.tensor(float("nan")), torch.tensor(float("inf"))
    assert not should_skip_batch(finite, step=7, rank=0, world_size=1, policy="stop", skipped_in_a_row=0)
    with pytest.raises(FloatingPointError, match=r"Non-finite loss \(nan\) at step 7.*optimizer\.on_nonfinite_loss=skip"):
        should_skip_batch(nan, step=7, rank=0, world_size=1, policy="stop", skipped_in_a_row=0)
    assert should_skip_batch(inf, step=7, rank=0, world_size=1, policy="skip", skipped_in_a_row=0)
    with pytest.raises(FloatingPointError, match="in a row"):
        should_skip_batch(nan, step=9, rank=0, world_size=1, policy="skip", skipped_in_a_row=MAX_CONSECUTIVE_SKIPS)
