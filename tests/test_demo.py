"""The one-command demo and job submission through the Ray Jobs API, against a real local Ray head."""

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from pipelines.preprocess.synthetic import BROKEN_REASONS

ROOT = Path(__file__).resolve().parents[1]


def listening(url: str) -> bool:
    parsed = urlparse(url)
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((parsed.hostname, parsed.port)) == 0


@pytest.mark.slow
def test_jobs_api_runs_the_repository_and_reports_failures(tmp_path):
    """Submit to a Ray head started here; stopping it ends its processes and nothing else."""
    from jobs.local_services import LocalRayHead
    from jobs.submission import JobFailed, submit_and_stream

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        with LocalRayHead(tmp_path / "logs", num_cpus=1) as head:
            client = head.client()
            log = (tmp_path / "streamed.txt").open("w")
            job = submit_and_stream(
                client, "python -c 'import os, jobs.cli; print(\"cwd\", os.getcwd())' && python -m jobs.cli --help", out=log
            )
            log.close()
            assert job.status == "SUCCEEDED" and "usage: videomaker" in job.logs
            cwd = next(line.split(" ", 1)[1] for line in job.logs.splitlines() if line.startswith("cwd "))
            assert Path(cwd).resolve() != ROOT and (Path(cwd) / "jobs" / "cli.py").is_file()  # the uploaded working_dir
            assert not (Path(cwd) / ".venv").exists() and not (Path(cwd) / ".git").exists()
            assert "usage: videomaker" in (tmp_path / "streamed.txt").read_text()  # the logs were streamed as the job ran

            with pytest.raises(JobFailed) as failure:
                submit_and_stream(client, f"python -m jobs.cli models verify {tmp_path / 'nowhere'}", out=open(os.devnull, "w"))
            message = str(failure.value)
            assert "FAILED" in message and "nowhere" in message and "is not a staged models directory" in message
            address = head.address
        assert not listening(address)  # the head is gone...
        assert bystander.poll() is None  # ...and a process it did not start still runs
    finally:
        bystander.kill()


@pytest.mark.slow
def test_demo_runs_preprocess_train_evaluate_compare_as_ray_jobs(tmp_path):
    """The README's main-job command: local Ray head and MLflow server, four jobs, results, clean shutdown."""
    import mlflow

    from test_readme import readme_commands

    output = tmp_path / "demo"
    home = tmp_path / "home"
    home.mkdir()
    # The README's main job as a new user runs it: an empty home (no Ray token, no caches, no config).
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "HF_HOME": str(home / ".cache/huggingface"),
    }
    command = readme_commands()[0] + f" --output-dir {output}"
    # The suite runs in this checkout's environment: an exact sync would uninstall the test group
    # (pytest, openai-clip, ...) under the tests still to run. --inexact installs the same packages.
    assert command.count("uv sync --locked") == 1, command
    command = command.replace("uv sync --locked", "uv sync --inexact --locked")
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((output / "demo.json").read_text())
    out = result.stdout

    # Every job went through the Jobs API, and its logs were streamed.
    assert list(summary["job_ids"]) == ["preprocess", "train", "evaluate", "compare"]
    assert all(f"submitted {job_id}: python -m jobs." in out for job_id in summary["job_ids"].values())
    assert "clips_per_s" in out and "checkpoint:" in out and "videos: 4 new" in out  # lines the jobs print

    # What each job made, where the report says.
    assert summary["samples"] == 5 and summary["quarantined"] == len(BROKEN_REASONS)
    checkpoint = Path(summary["checkpoint"])
    assert checkpoint.name == "checkpoint_00000002" and (checkpoint / "trainable.safetensors").is_file()
    evaluation = Path(summary["evaluation"])
    assert (evaluation / "videos" / "object" / "grid.html").is_file()
    assert len(list(evaluation.glob("videos/*/*/*.gif"))) == 4  # 2 subjects x 1 prompt x 2 seeds
    assert json.loads((evaluation / "evaluation.json").read_text())["method"]["checkpoint"] == str(checkpoint)
    comparison = Path(summary["comparison"]).read_text()
    assert "demo " in comparison and "VideoMaker (paper)" in comparison
    assert comparison.strip() in out and summary["mlflow_tracking_uri"] in out and str(checkpoint) in out

    # The runs are in the MLflow server's sqlite store, artifacts under its artifacts folder.
    client = mlflow.MlflowClient(f"sqlite:///{output}/mlflow/mlflow.db")
    for experiment, runs in (("videomaker-curation", 1), ("videomaker-train", 1), ("videomaker-eval", 1 + 2)):
        found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
        assert len(found) == runs, experiment  # eval: the parent and a nested run per set
        assert client.get_experiment_by_name(experiment).tags["mlflow.experimentKind"] == "custom_model_development"
    assert list((output / "mlflow" / "artifacts").rglob("grid.html"))

    # Lineage: each run names what it consumed and the run that made it.
    def only_run(experiment: str, job: str):
        (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], f"tags.`videomaker.job` = '{job}'")
        return run

    curation, training = only_run("videomaker-curation", "preprocess"), only_run("videomaker-train", "train")
    evaluation_run = only_run("videomaker-eval", "evaluate")
    assert json.loads((output / "dataset" / "summary.json").read_text())["mlflow_run_id"] == curation.info.run_id
    assert training.data.tags["videomaker.curation_run_id"] == curation.info.run_id
    (data_input,) = training.inputs.dataset_inputs
    assert data_input.dataset.name == "preprocess-output" and {t.key: t.value for t in data_input.tags}["rows"] == "5"
    assert str(output / "dataset" / "data") in data_input.dataset.source
    assert evaluation_run.data.tags["videomaker.training_run_id"] == training.info.run_id
    assert evaluation_run.data.tags["videomaker.checkpoint_step"] == "2"
    (benchmark_input,) = evaluation_run.inputs.dataset_inputs
    benchmark_file = Path(json.loads(benchmark_input.dataset.source)["uri"])
    assert benchmark_input.dataset.digest == hashlib.sha256(benchmark_file.read_bytes()).hexdigest()[:16]

    # The final checkpoint is a version of the demo's registered model: metadata as tags, weights as artifacts.
    name, version_number = summary["registered"].removeprefix("models:/").split("/")
    version = client.get_model_version(name, version_number)
    assert version.run_id == training.info.run_id and version.source == f"runs:/{training.info.run_id}/checkpoints/checkpoint_00000002"
    assert (version.tags["videomaker.preset"], version.tags["videomaker.step"]) == ("tiny", "2")
    (registered_weights,) = (output / "mlflow" / "artifacts").rglob(f"{training.info.run_id}/artifacts/checkpoints/*/trainable.safetensors")
    assert registered_weights.read_bytes() == (checkpoint / "trainable.safetensors").read_bytes()
    assert f"registered:  {summary['registered']}" in out

    # Only what the demo started is stopped, and it is stopped; the empty home stayed empty of Ray state.
    assert not listening(summary["ray_address"]) and not listening(summary["mlflow_tracking_uri"])
    assert not (home / ".ray").exists()
