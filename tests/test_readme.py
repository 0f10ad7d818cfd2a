"""The README's commands are what CI runs and what the project really provides."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    return [lines[i + 1] for i, line in enumerate(lines) if line.strip() == "```bash"]


def test_ci_runs_exactly_the_readme_test_command():
    main_job, test_command = readme_commands()[:2]
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line and not line.startswith(("#", "set ", "cd ", "export ", "unset ", "fresh_home="))]
    assert ci_lines == [test_command]  # the rest only sets up the fresh machine's environment
    assert test_command.endswith("uv run pytest")
    assert main_job.endswith("uv run videomaker demo")  # run by tests/test_demo.py
