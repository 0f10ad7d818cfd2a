"""A Ray head and an MLflow server on loopback, started for one command and stopped after it.

Each service runs in its own process group, so stopping it ends every process it started (the
raylet, workers and job drivers of the head; the web workers of MLflow) and nothing else: a Ray
cluster or MLflow server the user already runs is never touched.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Ray is imported only when a client is made (jobs.submission)
    from ray.job_submission import JobSubmissionClient

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _venv_tool(name: str) -> str:
    """The console script installed beside this interpreter (ray, mlflow), so the same venv serves jobs."""
    tool = Path(sys.executable).parent / name
    if not tool.exists():
        raise FileNotFoundError(f"{tool} not found: install the project (`uv sync --locked`) and run from its environment.")
    return str(tool)


class LocalService:
    """A process group started by `start()`, ended by `stop()`; a context manager."""

    name = "service"

    def __init__(self, log_dir: str | Path) -> None:
        self.log_path = Path(log_dir) / f"{self.name}.log"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str | None]:
        """Variables the service is started with, beside this process's own (None removes one)."""
        return {}

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout_s: float = 120.0) -> LocalService:
        """Launch and wait until it answers; stopped again if it does not come up."""
        self.launch()
        try:
            self.wait_until_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self) -> None:
        """Start the process group without waiting (several services then come up side by side)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Jobs find `python` (and the project's packages) in this environment first.
        env = {**os.environ, **self.environment(), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        env = {key: value for key, value in env.items() if value is not None}  # None: not inherited
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_until_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.process.returncode} while starting; see {self.log_path}.")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not come up within {timeout_s:.0f} s; see {self.log_path}.")
            time.sleep(0.5)
        logger.info("%s up at %s (log: %s)", self.name, self.address, self.log_path)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the group (Ray and MLflow shut down cleanly on it), SIGKILL what is left after `timeout_s`."""
        if self.process is None:
            return
        group = self.process.pid
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and _group_alive(group):
                self.process.poll()
                time.sleep(0.2)
            if not _group_alive(group):
                break
        self.process.wait()
        self.process = None
        self.after_stop()

    def after_stop(self) -> None:
        """Clean-up beyond the process group."""

    def __enter__(self) -> LocalService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _http_ok(url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class LocalRayNode(LocalService):
    """One `ray start --block` node on 127.0.0.1 with ports of its own; `LocalRayHead` is the head.

    Authentication: Ray's GCS and raylet listen on the machine's address, not only loopback, so a
    cluster without token auth would run code for anyone who can reach this machine. The head
    therefore generates a token of its own (never the user's `~/.ray/auth_token`, which a fresh
    machine does not have and `ray start` does not create) into its temp dir, readable by this user
    only; every node, job driver and Jobs API client of this cluster reads it from there.
    """

    name = "ray-node"

    def __init__(
        self,
        log_dir: str | Path,
        *,
        token_path: Path,
        temp_dir: str,
        num_cpus: int | None = None,
        resources: dict[str, float] | None = None,
        head_address: str | None = None,
        label: str | None = None,
    ) -> None:
        if label:
            self.name = label
        super().__init__(log_dir)
        self.token_path = Path(token_path)
        self.temp_dir = temp_dir
        self.num_cpus = num_cpus
        self.resources = dict(resources or {})
        self.head_address = head_address
        self.agent_port, self.metrics_port = free_port(), free_port()

    def command(self) -> list[str]:
        command = [
            _venv_tool("ray"),
            "start",
            "--block",
            "--disable-usage-stats",
            f"--node-ip-address={HOST}",
            f"--dashboard-agent-listen-port={self.agent_port}",
            f"--metrics-export-port={self.metrics_port}",
            f"--temp-dir={self.temp_dir}",
        ]
        if self.head_address is not None:
            command.append(f"--address={self.head_address}")
        if self.num_cpus is not None:
            command.append(f"--num-cpus={self.num_cpus}")
        if self.resources:
            command.append(f"--resources={json.dumps(self.resources)}")
        return command

    def environment(self) -> dict[str, str | None]:
        return {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.token_path),
            "RAY_AUTH_TOKEN": None,  # the user's token (if any) would win over this cluster's file
            "RAY_ADDRESS": None,  # drivers of this cluster's jobs get its address from the job supervisor
            "RAY_ENABLE_UV_RUN_RUNTIME_ENV": os.environ.get("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0"),
        }

    @property
    def address(self) -> str:
        return f"node of {self.head_address}"

    def launch(self) -> None:
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0  # the log is appended to
        super().launch()

    def ready(self) -> bool:
        """`ray start` says so (in this start's part of the log) once the node's raylet has registered."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_offset)
                return b"Ray runtime started" in log.read()
        except OSError:
            return False

    def stop(self, timeout_s: float = 5.0) -> None:
        # Short grace: a node of this cluster has nothing to flush that outlives it.
        super().stop(timeout_s)

    def kill(self) -> None:
        """SIGKILL the node's whole process group at once (its raylet and workers): a node failure."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # already gone
            self.process.wait()
            self.process = None


class LocalRayHead(LocalRayNode):
    """`ray start --head --block` with the dashboard, which serves the Jobs API, on 127.0.0.1.

    Every port is chosen free, so it runs beside any other Ray cluster on the machine. Its own temp
    dir keeps Ray's address file out of /tmp/ray, so a later bare `ray.init()` elsewhere never finds
    this head; short, because Ray's socket paths must fit 107 bytes.
    """

    name = "ray-head"

    def __init__(self, log_dir: str | Path, *, num_cpus: int | None = None, resources: dict[str, float] | None = None) -> None:
        temp_dir = tempfile.mkdtemp(prefix="vmray-")
        token_path = Path(temp_dir) / "auth_token"
        with os.fdopen(os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as token:
            token.write(secrets.token_hex(32))  # 256 bits, as Ray's own generator
        super().__init__(log_dir, token_path=token_path, temp_dir=temp_dir, num_cpus=num_cpus, resources=resources)
        self.gcs_port, self.dashboard_port, self.client_port = (free_port() for _ in range(3))

    @property
    def address(self) -> str:
        """The Jobs API address (`ray job submit --address ...`)."""
        return f"http://{HOST}:{self.dashboard_port}"

    @property
    def gcs_address(self) -> str:
        """What worker nodes and drivers join (`ray start --address ...`, `ray.init(address=...)`)."""
        return f"{HOST}:{self.gcs_port}"

    def command(self) -> list[str]:
        return (
            super().command()[:2]
            + [
                "--head",
                f"--port={self.gcs_port}",
                "--include-dashboard=true",
                f"--dashboard-host={HOST}",
                f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={self.client_port}",
            ]
            + super().command()[2:]
        )

    def add_worker(
        self, *, num_cpus: int | None = None, resources: dict[str, float] | None = None, label: str | None = None
    ) -> LocalRayNode:
        """A worker node of this head (not started): same token and temp dir, ports of its own."""
        return LocalRayNode(
            self.log_path.parent,
            token_path=self.token_path,
            temp_dir=self.temp_dir,
            num_cpus=num_cpus,
            resources=resources,
            head_address=self.gcs_address,
            label=label,
        )

    def ready(self) -> bool:
        return _http_ok(f"{self.address}/api/version", self.headers())

    def after_stop(self) -> None:
        """Kill any process of this cluster that left the group (they all name its temp dir)."""
        marker = self.temp_dir.encode()
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue
        logger.info("ray-head stopped; its session logs stay in %s", self.temp_dir)

    def token(self) -> str:
        return self.token_path.read_text().strip()

    def headers(self) -> dict[str, str]:
        """The Authorization header this head's dashboard (Jobs API) asks for."""
        return {"Authorization": f"Bearer {self.token()}"}

    def client(self) -> JobSubmissionClient:
        """A Jobs API client of this head."""
        from jobs.submission import jobs_api_client

        return jobs_api_client(self.address, self.headers())


class LocalMlflowServer(LocalService):
    """`mlflow server` with a sqlite backend and artifacts served from a local folder."""

    name = "mlflow-server"

    def __init__(self, directory: str | Path) -> None:
        directory = Path(directory).resolve()
        super().__init__(directory)
        self.database = directory / "mlflow.db"
        self.artifacts = directory / "artifacts"
        self.port = free_port()

    @property
    def address(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self) -> list[str]:
        return [
            _venv_tool("mlflow"),
            "server",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{self.database}",
            "--artifacts-destination",
            str(self.artifacts),
        ]

    def environment(self) -> dict[str, str]:
        # The server's job runner (several huey worker processes) serves GenAI features, not tracking.
        return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

    def ready(self) -> bool:
        return _http_ok(f"{self.address}/health")

    def reopen_command(self) -> str:
        """How to browse the runs again after this server is stopped."""
        return (
            f"mlflow server --backend-store-uri sqlite:///{self.database} --artifacts-destination {self.artifacts} "
            f"--host {HOST} --port 5000"
        )
