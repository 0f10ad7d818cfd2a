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
    violations = {str(f.relative_to(ROOT)): sorted(imported_roots(f) & FORBIDDEN[package]) for f in files}
    assert {f: v for f, v in violations.items() if v} == {}


def project_files() -> list[str]:
    """Every file of the project: tracked, plus new files not yet committed (git's ignore rules apply)."""
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return sorted({name for name in listed if (ROOT / name).is_file()})


def text_files() -> list[str]:
    """Project files that are text, whatever their suffix (`.ci/run`, `.gitignore`, YAML, HTML, ...)."""
    return [name for name in project_files() if name != "uv.lock" and b"\0" not in (ROOT / name).read_bytes()[:8192]]


def test_no_file_points_outside_the_repository():
    """The project documents what it follows itself (docs/method.md); nothing refers to files beside the checkout."""
    import re

    outside = re.compile(r"\.\./shared|SPEC\.md|\bSPEC\b")
    names = text_files()
    assert {"README.md", "docs/method.md", "jobs/configs/eval_paper.yaml", ".ci/run"} <= set(names)
    offenders = []
    for name in names:
        if name == "tests/test_layering.py":  # this test names the pattern it looks for
            continue
        for number, line in enumerate((ROOT / name).read_text(errors="replace").splitlines(), 1):
            if outside.search(line):
                offenders.append(f"{name}:{number}: {line.strip()[:100]}")
    assert not offenders, "\n".join(offenders)


DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")), "bench/RESULTS.md"]
REPOSITORY_DIRS = ("videomaker/", "pipelines/", "metrics/", "jobs/", "bench/", "tests/", "docs/", ".ci/")


def test_the_design_documents_exist():
    for name in ("docs/method.md", "docs/architecture.md"):
        assert (ROOT / name).is_file(), f"{name} is missing"
        assert len((ROOT / name).read_text().split()) > 500, f"{name} is a stub"


def test_every_relative_link_in_the_docs_points_to_a_file_that_exists():
    import re

    link = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
    broken = []
    for name in DOCS:
        for number, line in enumerate((ROOT / name).read_text().splitlines(), 1):
            for target in link.findall(line):
                if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):  # URLs, mailto:, anchors
                    continue
                path = target.split("#")[0]
                if not (ROOT / name).parent.joinpath(path).resolve().exists():
                    broken.append(f"{name}:{number}: {target}")
    assert not broken, "\n".join(broken)


def test_every_repository_path_a_document_names_exists():
    """`pipelines/x.py`, `docs/y.md`, `jobs/configs/` in the docs, README, code and configs are real paths.

    Tests are left out: they name files they create or forbid.
    """
    import re

    path = re.compile(r"(?<![\w./-])((?:" + "|".join(re.escape(d) for d in REPOSITORY_DIRS) + r")[\w./-]*[\w/])")
    missing = []
    for name in [*DOCS, *(n for n in text_files() if n.endswith((".py", ".yaml")) and not n.startswith("tests/"))]:
        for number, line in enumerate((ROOT / name).read_text(errors="replace").splitlines(), 1):
            for mention in path.findall(line):
                if not (ROOT / mention).exists():
                    missing.append(f"{name}:{number}: {mention}")
    assert not missing, "\n".join(missing)


def test_every_section_pointer_into_the_method_page_exists():
    """'docs/method.md, section 7' anywhere in the project names a numbered section that page has."""
    import re

    sections = set(re.findall(r"^## (\d+)\. ", (ROOT / "docs/method.md").read_text(), flags=re.M))
    pointer = re.compile(r"docs/method\.md,? section (\d+)")
    wrong = [
        f"{name}: section {n}"
        for name in text_files()
        for n in pointer.findall((ROOT / name).read_text(errors="replace"))
        if n not in sections
    ]
    assert sections >= {str(n) for n in range(1, 11)}
    assert not wrong, "\n".join(wrong)
