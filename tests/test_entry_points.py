"""Every job entry point started as `python -m jobs.X` (what `ray job submit` runs): exit codes and messages.

Success, worker log lines and failed items are checked where the end-to-end tests run the jobs
(`python -m jobs.preprocess` in test_preprocess_e2e, `jobs.score` in test_scoring, `jobs.train` in
test_train, nightly's regression code in test_evaluate, all of them on a cluster in test_cluster).
"""

import subprocess
import sys
from pathlib import Path

import pytest

from jobs.entry import ExitCode

ROOT = Path(__file__).resolve().parents[1]

CONFIG_JOBS = ["preprocess", "train", "evaluate", "score", "nightly"]
REQUIRED = {"nightly": ["--train-run", "/nowhere", "--baseline", "b"]}


def python_m(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"jobs.{module}", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("job", CONFIG_JOBS)
def test_a_missing_config_file_is_bad_input(job, tmp_path):
    result = python_m(job, "--config", str(tmp_path / "nope.yaml"), *REQUIRED.get(job, []))
    assert result.returncode == ExitCode.BAD_INPUT == 2
    assert f"python -m jobs.{job}: error: --config '{tmp_path / 'nope.yaml'}': no such file." in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("job", CONFIG_JOBS)
def test_an_unknown_config_key_is_bad_input_naming_the_key(job, capsys):
    """The same main as above, called in this process (each subprocess costs seconds of imports)."""
    import importlib

    module = importlib.import_module(f"jobs.{job}")
    assert module.main(["--set", "no_such_key=1", *REQUIRED.get(job, [])]) == 2
    err = capsys.readouterr().err
    assert f"python -m jobs.{job}: error:" in err and "config.no_such_key: unknown key. Valid keys here:" in err and "Traceback" not in err


def test_compare_and_models_report_bad_input_the_same_way(tmp_path):
    compare = python_m(
        "compare", "nosuchrun", "--mlflow-tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--output-dir", str(tmp_path / "cmp")
    )
    assert compare.returncode == 2 and "python -m jobs.compare: error:" in compare.stderr and "nosuchrun" in compare.stderr
    models = python_m("models", "verify", str(tmp_path / "nowhere"))
    assert models.returncode == 2 and "python -m jobs.models: error:" in models.stderr


def test_a_failure_while_running_is_1_with_its_traceback_and_bad_input_is_2(capsys, caplog):
    """A worker's ValueError reaches the driver as a Ray error deriving from ValueError: still a failure (1)."""
    import argparse

    import ray

    from jobs.entry import execute

    def bad_input(args):
        raise ValueError("`input` 'x.csv' does not exist.")

    def crash(args):
        raise RuntimeError("disk on fire")

    def worker_raises(args):
        @ray.remote(num_cpus=0)
        def check():
            raise ValueError("bad row inside a task")

        ray.init(address="local", num_cpus=1, include_dashboard=False)
        try:
            ray.get(check.remote())
        finally:
            ray.shutdown()

    args = argparse.Namespace(log_level="INFO")
    assert execute("videomaker x", bad_input, args) == ExitCode.BAD_INPUT
    assert "videomaker x: error: `input` 'x.csv' does not exist." in capsys.readouterr().err
    assert execute("videomaker x", crash, args) == ExitCode.FAILED
    assert "videomaker x: failed: RuntimeError: disk on fire" in capsys.readouterr().err
    assert "Traceback" in caplog.text and "disk on fire" in caplog.text
    assert execute("videomaker x", worker_raises, args) == ExitCode.FAILED
    assert "bad row inside a task" in capsys.readouterr().err


def test_exit_codes_are_distinct_and_documented():
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3]
    readme = (ROOT / "README.md").read_text()
    for code in ExitCode:
        assert f"| {int(code)} |" in readme, f"README lacks exit code {int(code)}"
