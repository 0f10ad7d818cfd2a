"""Every job on object storage: preprocess -> train -> evaluate -> compare (and score, imports, nightly) on s3://.

The S3-compatible server is moto's (`moto_server`, from PyPI), started here on 127.0.0.1 with
authentication enforced, so a wrong secret is refused as a real bucket refuses it. The jobs run
through the Jobs API of a local Ray head, and the credentials and endpoint reach them the way a
cluster user passes them: the standard AWS variables in the job's `runtime_env` env_vars.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
BUCKET = "videomaker-ci"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server with one IAM user (the only credentials it accepts) and one bucket; yields their env vars."""
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(tmp_path_factory.mktemp("s3") / "moto.log", "w")
    # The first three requests (creating the user, its policy and key) are let through unsigned; then every one is checked.
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=os.environ | {"INITIAL_NO_AUTH_ACTION_COUNT": "3"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError as error:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"moto_server did not start; see {log.name}") from error
                time.sleep(0.2)
        iam = boto3.client(
            "iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap"
        )
        iam.create_user(UserName="videomaker")
        iam.put_user_policy(
            UserName="videomaker",
            PolicyName="everything",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
        )
        key = iam.create_access_key(UserName="videomaker")["AccessKey"]
        env = {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket=BUCKET)
        yield env
    finally:
        server.kill()
        server.wait()
        log.close()


def objects(env: dict, prefix: str) -> list[str]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def buckets(env: dict) -> list[str]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    return sorted(b["Name"] for b in client.list_buckets()["Buckets"])


def upload_dir(env: dict, local: Path, prefix: str) -> None:
    from videomaker import storage

    with _env(env):
        for path in sorted(local.rglob("*")):
            if path.is_file():
                storage.upload_file(path, f"s3://{BUCKET}/{prefix}/{path.relative_to(local).as_posix()}")


class _env:
    """These variables in this process for a moment (the storage helpers read them like every job does)."""

    def __init__(self, values: dict):
        self.values, self.saved = values, {}

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in self.values}
        os.environ.update(self.values)

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def python_m(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | env | {"RAY_ADDRESS": "local"},
    )


def test_a_missing_bucket_or_a_wrong_secret_fails_before_any_work_naming_the_uri(s3, tmp_path):
    from pipelines.preprocess.synthetic import make_corpus

    corpus = make_corpus(tmp_path / "corpus", num_faces=1, num_objects=0, broken=False, frames=20, size=(64, 64))
    missing = python_m(
        s3,
        "jobs.preprocess",
        "--config",
        "jobs/configs/preprocess_demo.yaml",
        "--input",
        str(corpus.manifest_path),
        "--output-dir",
        "s3://no-such-bucket/shp",
        "--set",
        "tracking.mlflow_tracking_uri=null",
        "--no-progress",
    )
    assert missing.returncode == 2, missing.stderr[-3000:]
    assert "`output_dir` 's3://no-such-bucket/shp': cannot write to it: bucket 'no-such-bucket' does not exist" in missing.stderr

    wrong = python_m(
        s3 | {"AWS_SECRET_ACCESS_KEY": "not-the-secret"},
        "jobs.evaluate",
        "--config",
        "jobs/configs/eval_demo.yaml",
        "--benchmark",
        f"s3://{BUCKET}/nothing/benchmark.csv",
        "--output-dir",
        f"s3://{BUCKET}/refused",
        "--no-progress",
    )
    assert wrong.returncode == 2, wrong.stderr[-3000:]
    assert f"`benchmark` 's3://{BUCKET}/nothing/benchmark.csv': cannot read it" in wrong.stderr and "ACCESS_DENIED" in wrong.stderr
    assert buckets(s3) == [BUCKET] and objects(s3, "") == []  # nothing was written, not even a write probe


def test_preprocess_train_evaluate_score_compare_and_nightly_on_s3(s3, tmp_path):
    from jobs.local_services import LocalMlflowServer, LocalRayHead
    from jobs.submission import JobFailed, submit_and_stream
    from metrics.backends.random_init import save_random_metric_models
    from pipelines.preprocess.synthetic import BROKEN_REASONS, make_corpus
    from videomaker import storage

    corpus = make_corpus(tmp_path / "corpus", num_faces=2, num_objects=1, frames=40, size=(96, 72))
    manifest = corpus.manifest_path.read_text().replace(f"{corpus.output_dir}/", "")
    corpus.manifest_path.write_text(manifest)  # names its videos relative to itself, so it can move to s3
    upload_dir(s3, corpus.output_dir, "corpus")
    root = f"s3://{BUCKET}"
    models = save_random_metric_models(tmp_path / "metric-models")  # staged on the node, as on an offline cluster
    backends = [a for role in ("clip", "dino") for a in ("--set", f"backends.{role}={json.dumps(asdict(getattr(models, role)))}")]
    log = open(tmp_path / "jobs.log", "w")

    with LocalRayHead(tmp_path / "ray", num_cpus=2) as head, LocalMlflowServer(tmp_path / "mlflow") as mlflow_server:
        client = head.client()

        def job(*args: str) -> str:
            return submit_and_stream(client, shlex.join(["python", "-m", *args]), env_vars={"HF_HUB_OFFLINE": "1", **s3}, out=log).logs

        job(
            "jobs.preprocess",
            "--config",
            "jobs/configs/preprocess_demo.yaml",
            "--input",
            f"{root}/corpus/{corpus.manifest_path.name}",
            "--output-dir",
            f"{root}/shp",
            "--set",
            "clips.size=64",
            "--mlflow-tracking-uri",
            mlflow_server.address,
            "--no-progress",
        )
        with _env(s3):
            summary = json.loads(storage.read_text(f"{root}/shp/summary.json"))
        assert summary["samples"] == 3 and summary["quarantined"] == len(BROKEN_REASONS)
        assert any(k.startswith("shp/data/") and k.endswith(".parquet") for k in objects(s3, "shp/data/"))
        assert any(k.startswith("shp/quarantine/") for k in objects(s3, "shp/quarantine/"))

        # Training reads only data/ of the output (quarantine/ holds Parquet too) and checkpoints to s3.
        train_logs = job(
            "jobs.train",
            "--config",
            "jobs/configs/train_tiny.yaml",
            "--dataset",
            f"{root}/shp",
            "--storage-path",
            f"{root}/runs",
            "--run-name",
            "s3-run",
            "--set",
            "max_steps=2",
            "--set",
            "resources.num_workers=1",
            "--mlflow-tracking-uri",
            mlflow_server.address,
        )
        assert "checkpoint: " in train_logs
        checkpoint = f"{root}/runs/s3-run/checkpoint_00000002"
        assert "runs/s3-run/checkpoint_00000002/trainable.safetensors" in objects(s3, "runs/s3-run/")

        # A benchmark manifest and its references on s3, the checkpoint read from s3, every output to s3.
        from jobs.demo import write_benchmark_from_dataset

        with _env(s3):
            local_dataset = tmp_path / "shp"
            storage.download_dir(f"{root}/shp", local_dataset)
        benchmark = write_benchmark_from_dataset(local_dataset, tmp_path / "benchmark")
        upload_dir(s3, benchmark.parent, "bench")
        evaluate = [
            "jobs.evaluate",
            "--config",
            "jobs/configs/eval_demo.yaml",
            "--benchmark",
            f"{root}/bench/benchmark.csv",
            "--mlflow-tracking-uri",
            mlflow_server.address,
            "--no-progress",
            *backends,
        ]
        eval_logs = job(*evaluate, "--checkpoint", checkpoint, "--output-dir", f"{root}/eval/trained", "--run-name", "trained")
        assert "videos: 4 new, 0 already done, 0 failed" in eval_logs
        produced = objects(s3, "eval/trained/")
        assert sum(k.endswith(".mp4") for k in produced) == 4 and "eval/trained/scores/samples.parquet" in produced
        assert "eval/trained/videos/object/grid.html" in produced

        # Another method's videos, listed in a manifest on s3, imported and scored the same way.
        with _env(s3):
            import pyarrow.parquet as pq

            samples = pq.read_table(storage.open_input(f"{root}/eval/trained/scores/samples.parquet")).to_pylist()
            lines = ["set,subject_id,prompt,seed,video"] + [
                f'{s["set"]},{s["subject_id"]},"{s["prompt"]}",{s["seed"]},{s["video"]}' for s in samples
            ]
            storage.write_text(f"{root}/imported/videos.csv", "\n".join(lines) + "\n")
        job(
            *evaluate,
            "--output-dir",
            f"{root}/eval/imported",
            "--run-name",
            "imported",
            "--set",
            "method.kind=imported",
            "--set",
            f"method.videos={root}/imported/videos.csv",
            "--set",
            "method.name=imported",
        )
        job(
            "jobs.compare",
            "trained",
            "imported",
            "--mlflow-tracking-uri",
            mlflow_server.address,
            "--output-dir",
            f"{root}/cmp",
            "--bootstrap",
            "200",
        )
        with _env(s3):
            report = json.loads(storage.read_text(f"{root}/cmp/comparison.json"))
            assert storage.read_bytes(f"{root}/cmp/comparison.png")[:8] == b"\x89PNG\r\n\x1a\n"
        imported = report["deltas"]["imported"]
        assert imported and all(d["delta"] == pytest.approx(0.0, abs=1e-9) for d in imported)  # the same videos

        # score: a manifest, videos and output on s3.
        with _env(s3):
            rows = ["video,subject_id,prompt,reference,set"] + [
                f'{s["video"]},{s["subject_id"]},"{s["prompt"]}",{s["reference"]},{s["set"]}' for s in samples
            ]
            storage.write_text(f"{root}/score/manifest.csv", "\n".join(rows) + "\n")
        score_config = tmp_path / "score.yaml"
        score_config.write_text(
            json.dumps(
                {
                    "backends": {**asdict(models), "face": None, "flow": {"name": "opencv", "options": {}}},
                    "scorers": {"num_cpus": 0.5, "batch_size": 4},
                }
            )
        )
        job(
            "jobs.score",
            "--config",
            str(score_config),
            "--manifest",
            f"{root}/score/manifest.csv",
            "--output-dir",
            f"{root}/score/out",
            "--no-progress",
        )
        with _env(s3):
            scored = pq.read_table(storage.open_input(f"{root}/score/out/records.parquet")).to_pylist()
        assert [r["clip_t"] for r in scored] == pytest.approx([s["clip_t"] for s in samples], abs=1e-6)

        # nightly: the newest checkpoint of the run on s3 against the trained baseline; same weights, so it passes.
        nightly_logs = job(
            "jobs.nightly",
            "--config",
            "jobs/configs/eval_demo.yaml",
            "--benchmark",
            f"{root}/bench/benchmark.csv",
            "--train-run",
            f"{root}/runs/s3-run",
            "--baseline",
            "trained",
            "--output-dir",
            f"{root}/nightly",
            "--mlflow-tracking-uri",
            mlflow_server.address,
            "--no-progress",
            *backends,
        )
        assert "NIGHTLY PASS" in nightly_logs
        assert "nightly/s3-run-checkpoint_00000002/scores/samples.parquet" in objects(s3, "nightly/")

        with pytest.raises(JobFailed, match="cannot write to it"):  # the cluster path reports it too
            job("jobs.compare", "trained", "--mlflow-tracking-uri", mlflow_server.address, "--output-dir", "s3://no-such-bucket/cmp")
    log.close()
    assert not [k for k in objects(s3, "") if ".videomaker-write-probe-" in k]  # the access checks clean up
