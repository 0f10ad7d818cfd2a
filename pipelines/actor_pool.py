"""Resources of a model stage run as a Ray Data actor pool, shared by every dataflow."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ActorPoolConfig:
    """Resources of a model stage, run as a Ray Data actor pool.

    Args:
        min_size: Fewest actors kept alive.
        max_size: Most actors the pool scales up to.
        initial_size: Actors started up front (default: min_size).
        num_gpus: GPUs per actor (0 on CPU machines).
        num_cpus: CPUs per actor, a logical reservation held even while the actor waits; keep it
            small on small machines so decode tasks are not starved.
        batch_size: Rows per `__call__`.
    """

    min_size: int = 1
    max_size: int = 1
    initial_size: int | None = None
    num_gpus: float = 0.0
    num_cpus: float = 0.25
    batch_size: int = 4

    def __post_init__(self):
        if not 1 <= self.min_size <= self.max_size:
            raise ValueError(
                f"Invalid ActorPoolConfig(min_size={self.min_size}, max_size={self.max_size}): need 1 <= min_size <= max_size."
            )
        if self.initial_size is not None and not self.min_size <= self.initial_size <= self.max_size:
            raise ValueError(f"Invalid ActorPoolConfig(initial_size={self.initial_size}): must lie in [min_size, max_size].")
        if self.num_gpus < 0 or self.num_cpus < 0 or self.batch_size < 1:
            raise ValueError(f"Invalid ActorPoolConfig(num_gpus={self.num_gpus}, num_cpus={self.num_cpus}, batch_size={self.batch_size}).")

    def map_batches_options(self) -> dict:
        """Keyword arguments of `Dataset.map_batches` that run a callable class on this pool."""
        from ray.data import ActorPoolStrategy

        return dict(
            batch_size=self.batch_size,
            compute=ActorPoolStrategy(min_size=self.min_size, max_size=self.max_size, initial_size=self.initial_size),
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
        )
