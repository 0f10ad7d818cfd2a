"""The README's commands are what CI runs and what the project really provides."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    return [lines[i + 1] for i, line in enumerate(lines) if line.strip() == "```bash"]


def test_ci_runs_exactly_the_readme_test_command():
    main_job, test_command = readme_commands()[:2]
    ci_lines = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd ", "export ", "unset ", "fresh_home="))
    ]
    browser = [line for line in ci_lines if line.startswith("command -v chromium ")]  # tests/browser.py's Chromium, if missing
    assert len(browser) == 1 and "apt-get install -y -q chromium;" in browser[0]
    assert [line for line in ci_lines if line not in browser] == [test_command]  # the rest only sets up the fresh machine
    steps = [step.strip() for step in test_command.split("&&")]
    assert steps[-3:] == ["uv run --no-sync ruff check .", "uv run --no-sync ruff format --check .", "uv run --no-sync pytest"]
    assert main_job.endswith("uv run videomaker demo")  # run by tests/test_demo.py


def sync_options(command: str) -> list[str]:
    """The options of the command's one `uv sync` (its `uv run` steps must not sync anything else)."""
    steps = [step.split() for step in command.split("&&")]
    syncs = [words[2:] for words in steps if words[:2] == ["uv", "sync"]]
    assert len(syncs) == 1, command
    assert all("--no-sync" in words for words in steps if words[:2] == ["uv", "run"] and "demo" not in words), command
    return syncs[0]


def test_the_test_command_installs_the_test_group_and_the_demo_no_group():
    main_job, test_command = readme_commands()[:2]
    selecting = ("--group", "--only-group", "--all-groups", "--dev", "--only-dev", "--extra", "--all-extras")
    chosen = [word for word in sync_options(test_command) if word.startswith(selecting) or not word.startswith("-")]
    assert chosen == ["--group", "test"]
    assert not [word for word in sync_options(main_job) if word.startswith(selecting)]


def test_test_and_plot_tools_are_not_runtime_dependencies():
    """pytest, xdist, ruff and matplotlib come from dependency groups; a plain `uv sync` installs none of them."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = {re.match(r"[A-Za-z0-9._-]+", spec).group().lower() for spec in pyproject["project"]["dependencies"]}
    tools = {"pytest", "pytest-xdist", "ruff", "matplotlib", "moto", "openai-clip", "psutil"}
    assert not runtime & tools
    assert pyproject["tool"]["uv"]["default-groups"] == []  # uv would otherwise sync a `dev` group by default
    assert "dev" not in pyproject["dependency-groups"]

    locked = next(
        package for package in tomllib.loads((ROOT / "uv.lock").read_text())["package"] if package["name"] == "videomaker"
    )  # what `uv sync --locked` installs, so the lock was refreshed too
    assert not {dependency["name"] for dependency in locked["dependencies"]} & tools
    assert {dependency["name"] for dependency in locked["dev-dependencies"]["test"]} >= tools
    assert {dependency["name"] for dependency in locked["dev-dependencies"]["plot"]} == {"matplotlib"}
