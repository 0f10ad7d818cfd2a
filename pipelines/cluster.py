"""Connecting a dataflow to Ray: the one place the jobs call `ray.init()`."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def connect_or_start_ray(system_config: dict | None = None) -> None:
    """Join the cluster Ray finds (RAY_ADDRESS, which `ray job submit` sets, or a local `ray start`), else start one.

    `system_config` applies only when Ray starts here: an existing cluster keeps its own settings.
    Worker output and errors are forwarded to this driver, so they reach the job's log.
    """
    import ray

    if ray.is_initialized():
        return
    try:
        ray.init(log_to_driver=True, _system_config=system_config or None)
    except ValueError:  # raised before connecting: an existing cluster takes no _system_config
        if not system_config:
            raise
        ray.init(log_to_driver=True)
    logger.info("Ray: %d node(s), %s CPUs", len([n for n in ray.nodes() if n["Alive"]]), ray.cluster_resources().get("CPU", 0))
