"""Entry points users run or `ray job submit`, and their configs."""

import os

# Run under `uv run`, Ray would start every worker with `uv run` in an uploaded copy of the current
# directory, re-creating the whole environment there (GBs). The jobs' workers use the interpreter
# the cluster was started with instead; `ray job submit` never involves `uv run`.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
