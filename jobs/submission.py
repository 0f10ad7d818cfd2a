"""Submit a job entry point through the Ray Jobs API with the repository as working_dir, streaming its logs.

This is what `ray job submit --working-dir . -- python -m jobs.train ...` does, callable from Python
so that a chain of jobs can stop at the first failure.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # ray loads only when a job is submitted
    from ray.job_submission import JobSubmissionClient

REPOSITORY = Path(__file__).resolve().parents[1]
# Never uploaded with the working_dir (Ray also leaves out what .gitignore lists).
EXCLUDES = [".git", ".venv", "outputs", "mlruns", "**/__pycache__", "*.egg-info", ".pytest_cache"]


class JobFailed(RuntimeError):
    """A submitted job ended in another state than SUCCEEDED; the message names it and its last log lines."""


@dataclass
class SubmittedJob:
    """A finished job: its id, entry point, status and full log."""

    job_id: str
    entrypoint: str
    status: str
    logs: str


def jobs_api_client(address: str, headers: dict[str, str] | None = None) -> JobSubmissionClient:
    """A Jobs API client of exactly `address`.

    Ray's client lets RAY_ADDRESS (or RAY_API_SERVER_ADDRESS) in this process's environment win over
    the address it is given; a user whose shell points at another cluster would submit there.
    """
    from ray.job_submission import JobSubmissionClient

    saved = os.environ.get("RAY_API_SERVER_ADDRESS")
    os.environ["RAY_API_SERVER_ADDRESS"] = address
    try:
        return JobSubmissionClient(address, headers=headers)
    finally:
        if saved is None:
            os.environ.pop("RAY_API_SERVER_ADDRESS")
        else:
            os.environ["RAY_API_SERVER_ADDRESS"] = saved


def runtime_env(env_vars: dict[str, str] | None = None, working_dir: str | Path = REPOSITORY) -> dict:
    """The repository as working_dir (so the cluster runs this checkout's code) plus `env_vars`."""
    if not (Path(working_dir) / "jobs").is_dir():
        raise FileNotFoundError(f"`working_dir` {str(working_dir)!r} is not the videomaker repository (no jobs/ folder).")
    return {"working_dir": str(working_dir), "excludes": EXCLUDES, "env_vars": dict(env_vars or {})}


def submit_and_stream(
    client: JobSubmissionClient,
    entrypoint: str,
    *,
    env_vars: dict[str, str] | None = None,
    submission_id: str | None = None,
    out: TextIO = sys.stdout,
) -> SubmittedJob:
    """Submit `entrypoint` on the cluster `client` talks to, echo its logs as they come, wait for the end.

    Raises:
        JobFailed: the job failed or was stopped; the job's logs stay on the cluster under its id.
    """
    from ray.job_submission import JobStatus

    job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env(env_vars), submission_id=submission_id)
    print(f"submitted {job_id}: {entrypoint}", file=out, flush=True)

    async def stream() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    asyncio.run(stream())  # returns when the job ends
    status = client.get_job_status(job_id)
    while not status.is_terminal():  # the log stream can close a moment before the status settles
        time.sleep(0.2)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    if status != JobStatus.SUCCEEDED:
        info = client.get_job_info(job_id)
        tail = "\n".join(logs.splitlines()[-20:])
        raise JobFailed(f"job {job_id} ({entrypoint}) ended {status.value}: {info.message}\n--- last log lines ---\n{tail}")
    return SubmittedJob(job_id, entrypoint, status.value, logs)
