"""The jobs on a real three-node Ray cluster on this machine (`ray start`, 127.0.0.1), through the Jobs API.

A head and two worker nodes, each with its own CPUs and a custom resource naming it. Each job runs
with the repository as working_dir, its work spread over the nodes, and gives what a one-node run of
the same config gives. Midway through each job one worker node is killed (SIGKILL to its process
group: raylet, workers and all): preprocess finishes on the surviving nodes; for training and
evaluation, whose actors each need a whole worker node, a replacement node joins (as an autoscaler
would bring one) and the job goes on from where it was: training from its latest checkpoint.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.dataset as pads
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

WORKER_CPUS = 2
# Each training worker and generator needs more than half a worker node: one per node, never on the head.
WHOLE_NODE_CPUS = 1.5
SIZE = 64


@dataclass
class Cluster:
    head: object
    workers: list = field(default_factory=list)

    def add_worker(self, label: str):
        for attempt in range(2):  # Ray gives a raylet 30 s to register, which a loaded 2-core machine can miss
            node = self.head.add_worker(num_cpus=WORKER_CPUS, resources={label.replace("-", "_"): 1}, label=label)
            try:
                self.workers.append(node.start())
                return node
            except RuntimeError:
                if attempt == 1:
                    raise

    def api(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode(params, doseq=True)
        request = urllib.request.Request(f"{self.head.address}{path}?{query}", headers=self.head.headers())
        for attempt in range(3):  # the state API answers 400 while the GCS is busy re-scheduling after a kill
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                if attempt == 2:
                    raise RuntimeError(f"{path}?{query}: {error}: {error.read()[:2000]!r}") from error
                time.sleep(2)

    def node_labels(self) -> dict[str, str]:
        """Ray node id -> the custom resource naming the node (vm_head, ray_worker_1, ...)."""
        nodes = self.api("/api/v0/nodes", limit=100, detail="true")["data"]["result"]["result"]
        labels = {}
        for node in nodes:
            names = [r for r in node["resources_total"] if r == "vm_head" or r.startswith("ray_worker_")]
            labels[node["node_id"]] = names[0] if names else "?"
        return labels

    def kill(self, node, timeout_s: float = 120) -> None:
        """SIGKILL a node's process group and wait until the GCS has it DEAD: the kill really took it out."""
        label = node.name.replace("-", "_")
        (node_id,) = [node_id for node_id, name in self.node_labels().items() if name == label]
        node.kill()
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = self.api("/api/v0/nodes", limit=100, detail="true")["data"]["result"]["result"]
            state = next(n["state"] for n in nodes if n["node_id"] == node_id)
            if state == "DEAD":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node.name} is still {state} {timeout_s} s after its kill")
            time.sleep(1)

    def nodes_that_ran(self, submission_id: str) -> set[str]:
        """Labels of the nodes where the job's tasks and actors ran (Ray's state API)."""
        job_id = self.head.client().get_job_info(submission_id).job_id
        labels = self.node_labels()
        ran = set()
        for kind in ("tasks", "actors"):
            rows = self.api(
                f"/api/v0/{kind}", limit=10000, detail="true", filter_keys="job_id", filter_predicates="=", filter_values=job_id
            )["data"]["result"]["result"]
            ran |= {labels.get(row.get("node_id") or "", "?") for row in rows if row.get("node_id")}
        return ran - {"?"}

    def submit(self, *command: str) -> str:
        from jobs.submission import runtime_env

        return self.head.client().submit_job(
            entrypoint=shlex.join(["python", "-m", *command]), runtime_env=runtime_env({"HF_HUB_OFFLINE": "1"})
        )

    def wait(self, submission_id: str, timeout_s: float = 600) -> tuple[str, str]:
        client = self.head.client()
        deadline = time.monotonic() + timeout_s
        while not (status := client.get_job_status(submission_id)).is_terminal():
            if time.monotonic() > deadline:
                client.stop_job(submission_id)
                raise TimeoutError(f"job {submission_id} still {status} after {timeout_s} s:\n{client.get_job_logs(submission_id)[-4000:]}")
            time.sleep(0.5)
        return status.value, client.get_job_logs(submission_id)


def cluster_processes(marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head (1 CPU) and two worker nodes (2 CPUs each) on 127.0.0.1; stops every process it started.

    (That stopping spares processes it did not start is tested on the head alone in test_demo.py.)
    """
    from jobs.local_services import LocalRayHead

    logs = tmp_path_factory.mktemp("cluster")
    head = LocalRayHead(logs, num_cpus=1, resources={"vm_head": 1})
    cluster = Cluster(head)
    try:
        head.start()
        for label in ("ray-worker-1", "ray-worker-2"):
            cluster.add_worker(label)
        assert set(cluster.node_labels().values()) == {"vm_head", "ray_worker_1", "ray_worker_2"}
        yield cluster
    finally:
        for node in cluster.workers:
            node.stop()
        head.stop()
        assert not cluster_processes(head.temp_dir)  # every process of the cluster is gone


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from pipelines.preprocess.synthetic import make_corpus

    return make_corpus(tmp_path_factory.mktemp("corpus") / "videos", num_faces=6, num_objects=6, frames=60, size=(128, 96), seed=3)


def preprocess_args(corpus, output: Path) -> list[str]:
    return [
        "jobs.preprocess",
        "--config",
        "jobs/configs/preprocess_demo.yaml",
        "--input",
        str(corpus.manifest_path),
        "--output-dir",
        str(output),
        "--set",
        f"clips.size={SIZE}",
        "--set",
        "tracking.mlflow_tracking_uri=null",
        "--no-progress",
        # Parts of 4 sources, so that some are committed before the kill and others after it.
        "--set",
        "output.sources_per_part=4",
        "--set",
        "output.flush_interval_s=2",
    ]


def run_locally(*args: str) -> subprocess.CompletedProcess:
    """The same job on one node: its own local Ray instance (RAY_ADDRESS=local, as conftest sets)."""
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900, env=os.environ | {"RAY_ADDRESS": "local"}
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def one_node_dataset(corpus, tmp_path_factory):
    output = tmp_path_factory.mktemp("one_node") / "dataset"
    run_locally(*preprocess_args(corpus, output))
    return output


def rows(path: Path, columns: list[str]) -> dict[str, dict]:
    table = pads.dataset(path, format="parquet").to_table(columns=columns)
    found = {row[columns[0]]: row for row in table.to_pylist()}
    assert len(found) == table.num_rows, f"duplicate {columns[0]} in {path}"
    return found


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_preprocess_spreads_over_the_nodes_and_finishes_on_the_survivors_of_a_node_kill(cluster, corpus, one_node_dataset, tmp_path):
    output = tmp_path / "dataset"
    markers = output / "_markers"
    job = cluster.submit(*preprocess_args(corpus, output))
    # Midway: some sources are durable, others are not yet.
    wait_for(
        lambda: markers.is_dir() and any(markers.iterdir()) or cluster.head.client().get_job_status(job).is_terminal(),
        600,
        "the first durable batch",
    )
    done_before = len(list(markers.iterdir()))
    ran_before = cluster.nodes_that_ran(job)
    victim = cluster.workers[1]
    cluster.kill(victim)
    status, logs = cluster.wait(job)
    if status != "SUCCEEDED":  # the surviving nodes did not finish it: re-submitted, it does the rest
        status, logs = cluster.wait(cluster.submit(*preprocess_args(corpus, output)))
    assert status == "SUCCEEDED", logs[-4000:]
    cluster.add_worker("ray-worker-3")  # the next tests have two worker nodes again

    summary = json.loads((output / "summary.json").read_text())
    assert 0 < done_before < len(list(markers.iterdir())), "the kill did not land midway"
    assert {"ray_worker_1", "ray_worker_2"} <= ran_before, f"tasks ran only on {ran_before}"
    assert "Ray: 3 node(s)" in logs or "Ray: 2 node(s)" in logs  # the job's own log lines reach the job log
    columns = ["sample_id", "frame_indices", "reference_frame_index", "reference_png", "frames"]
    got, expected = rows(output / "data", columns), rows(one_node_dataset / "data", columns)
    assert got.keys() == expected.keys() and summary["samples"] == len(expected) > 0  # nothing lost, no duplicate
    for sample_id, row in expected.items():
        assert got[sample_id] == row, sample_id  # byte-identical clips and references
    quarantine = ["source_uri", "reason_code"]
    assert rows(output / "quarantine", quarantine) == rows(one_node_dataset / "quarantine", quarantine)


def registered_step(run_dir: Path) -> int | None:
    try:
        latest = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())["latest_checkpoint_result"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return int(latest["checkpoint_dir_name"].split("_")[1]) if latest else None


def test_training_runs_ddp_across_two_nodes_and_resumes_from_its_checkpoint_after_a_node_kill(cluster, one_node_dataset, tmp_path):
    storage, steps = tmp_path / "runs", 10
    job = cluster.submit(
        "jobs.train",
        "--config",
        "jobs/configs/train_tiny.yaml",
        "--dataset",
        str(one_node_dataset),
        "--storage-path",
        str(storage),
        "--run-name",
        "multinode",
        "--set",
        f"max_steps={steps}",
        "--set",
        "resources.num_workers=2",
        "--set",
        f"resources.cpus_per_worker={WHOLE_NODE_CPUS}",
        "--set",
        "checkpoints.every_steps=2",
        "--set",
        "checkpoints.max_failures=2",
        "--set",
        "model.switches.update_motion=false",
    )
    wait_for(
        lambda: registered_step(storage / "multinode") is not None or cluster.head.client().get_job_status(job).is_terminal(),
        600,
        "the first registered checkpoint",
    )
    ran_before = cluster.nodes_that_ran(job)
    killed_after = registered_step(storage / "multinode")
    victim = next(node for node in cluster.workers if node.process is not None)
    cluster.kill(victim)
    cluster.add_worker("ray-worker-4")  # the replacement node an autoscaler would start
    status, logs = cluster.wait(job)
    assert status == "SUCCEEDED", logs[-4000:]

    assert killed_after is not None and killed_after < steps, "the kill did not land midway"
    workers = {label for label in ran_before if label.startswith("ray_worker_")}
    assert len(workers) == 2, f"the two DDP workers did not run on two nodes: {ran_before}"
    resumed = [int(line.split("resumed at step ")[1].split(",")[0]) for line in logs.splitlines() if "rank 0 resumed at step" in line]
    assert resumed and resumed[-1] >= killed_after > 0, logs[-4000:]  # its latest checkpoint, not step 0
    assert registered_step(storage / "multinode") == steps


def evaluate_args(benchmark: Path, models, output: Path, *pool: str) -> list[str]:
    backends = [arg for role in ("clip", "dino") for arg in ("--set", f"backends.{role}={json.dumps(asdict(getattr(models, role)))}")]
    return [
        "jobs.evaluate",
        "--config",
        "jobs/configs/eval_demo.yaml",
        "--benchmark",
        str(benchmark),
        "--output-dir",
        str(output),
        "--set",
        "seeds=[0,1]",
        "--set",
        "prompts_per_subject=2",
        "--set",
        "generators.batch_size=1",
        *pool,
        *backends,
        "--no-progress",
    ]


def test_evaluation_generates_on_both_worker_nodes_and_survives_a_node_kill(cluster, one_node_dataset, tmp_path):
    from jobs.demo import write_benchmark_from_dataset
    from metrics.backends.random_init import save_random_metric_models

    benchmark = write_benchmark_from_dataset(one_node_dataset, tmp_path / "benchmark")
    models = save_random_metric_models(tmp_path / "metric-models")
    reference = tmp_path / "one-node"
    local = subprocess.Popen(
        [sys.executable, "-m", *evaluate_args(benchmark, models, reference)],
        cwd=ROOT,
        env=os.environ | {"RAY_ADDRESS": "local"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    try:
        _evaluate_on_the_cluster(cluster, benchmark, models, reference, local, tmp_path)
    finally:
        if local.poll() is None:
            os.killpg(local.pid, signal.SIGKILL)


def _evaluate_on_the_cluster(cluster, benchmark, models, reference, local, tmp_path):
    output = tmp_path / "cluster"
    pool = ["--set", f"generators={{min_size: 2, max_size: 2, num_cpus: {WHOLE_NODE_CPUS}, batch_size: 1}}"]
    args = evaluate_args(benchmark, models, output, *pool)
    job = cluster.submit(*args)
    done = lambda: len(list(output.glob("videos/*/*/*.json")))  # noqa: E731 - sidecars are written last
    wait_for(lambda: done() >= 2 or cluster.head.client().get_job_status(job).is_terminal(), 600, "the first videos")
    done_before = done()
    ran_before = cluster.nodes_that_ran(job)
    victim = next(node for node in cluster.workers if node.process is not None)
    cluster.kill(victim)
    cluster.add_worker("ray-worker-5")
    status, logs = cluster.wait(job)
    if status != "SUCCEEDED":
        status, logs = cluster.wait(cluster.submit(*args))
    assert status == "SUCCEEDED", logs[-4000:]
    assert local.wait(timeout=900) == 0, local.stdout.read()[-3000:]

    items = 2 * 2 * 2  # subjects x prompts x seeds
    assert 0 < done_before < items, "the kill did not land midway"
    assert len({label for label in ran_before if label.startswith("ray_worker_")}) == 2, ran_before
    metrics = ["clip_t", "clip_i", "dino_i", "t_cons", "dd_pairs_above"]
    columns = ["item_id", "status", *metrics]
    got, expected = rows(output / "scores" / "samples.parquet", columns), rows(reference / "scores" / "samples.parquet", columns)
    assert len(expected) == items and got.keys() == expected.keys()
    for item_id, row in expected.items():
        assert row["status"] == got[item_id]["status"] == "ok", item_id
        assert [got[item_id][m] for m in metrics] == pytest.approx([row[m] for m in metrics], rel=1e-5, abs=1e-6), item_id
