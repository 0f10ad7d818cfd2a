"""Dependencies flow jobs -> pipelines -> metrics / videomaker, never back; the model core has no Ray."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "videomaker": {"ray", "pipelines", "jobs", "metrics"},
    "metrics": {"pipelines", "jobs"},
    "pipelines": {"jobs"},
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_layering(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    violations = {
        str(f.relative_to(ROOT)): sorted(imported_roots(f) & FORBIDDEN[package]) for f in files
    }
    assert {f: v for f, v in violations.items() if v} == {}


def test_no_file_points_outside_the_repository():
    """The project documents what it follows itself (docs/method.md); nothing refers to files beside the checkout."""
    import re
    import subprocess

    root = Path(__file__).resolve().parents[1]
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    outside = re.compile(r"\.\./shared|SPEC\.md|\bSPEC\b")
    offenders = []
    for name in files:
        if name == "uv.lock" or not name.endswith((".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".json")):
            continue
        if name == "tests/test_layering.py":  # this test names the pattern it looks for
            continue
        for number, line in enumerate((root / name).read_text(errors="replace").splitlines(), 1):
            if outside.search(line):
                offenders.append(f"{name}:{number}: {line.strip()[:100]}")
    assert not offenders, "\n".join(offenders)
