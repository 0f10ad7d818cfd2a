"""The benchmark scripts start as bench/RESULTS.md runs them: `python bench/<name>.py` from the checkout."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.name for p in (ROOT / "bench").glob("*.py"))


def test_every_benchmark_is_listed_in_the_results():
    results = (ROOT / "bench" / "RESULTS.md").read_text()
    assert SCRIPTS and all(f"bench/{name}" in results for name in SCRIPTS)


def test_no_benchmark_is_named_after_a_project_package():
    """Run as a script, bench/ is first on sys.path: a bench/metrics.py would be imported as `metrics`."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert {"videomaker", "pipelines", "metrics", "jobs"} <= packages
    assert not {Path(name).stem for name in SCRIPTS} & packages


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_imports_and_has_help(name):
    # Run as a script, bench/ is first on sys.path: the scripts put the checkout's packages there.
    result = subprocess.run([sys.executable, f"bench/{name}", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"usage: {name}")
