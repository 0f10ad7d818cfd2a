"""Killing a job the way a lost node or an operator's `kill -9` does, for the resume tests."""

import os
import signal
import subprocess

import psutil


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a job started with ``start_new_session=True`` and everything it started; return once all are gone.

    Ray workers put themselves in their own process group, so killing the driver's group leaves them
    alive for a moment (until they notice the raylet is gone) and one can still commit a file. Tests read
    what is durable only after every writer is dead."""
    root = psutil.Process(process.pid)
    tree = [root, *root.children(recursive=True)]
    os.killpg(process.pid, signal.SIGKILL)
    for proc in tree:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait()
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert not alive, f"still running after SIGKILL: {alive}"
