"""One Ray Data stage per module: a callable class for `map_batches` (`__init__` loads, `__call__` maps a batch)."""
