"""The documents agree with the code they describe: published numbers, jobs, and the pages the README lists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def section(page: str, number: int) -> str:
    """The text of `## <number>. ...` up to the next numbered section."""
    text = (ROOT / page).read_text()
    match = re.search(rf"^## {number}\. .*?(?=^## \d+\. |\Z)", text, flags=re.M | re.S)
    assert match, f"{page} has no section {number}"
    return match.group(0)


def markdown_rows(text: str) -> list[list[str]]:
    """Every table row of `text` as its cells, header rows included, separator rows left out."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|[-| :]+\|", line.strip()):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_the_published_numbers_on_the_method_page_are_the_ones_compare_prints():
    from metrics.aggregate import METRIC_LABELS
    from metrics.published import PUBLISHED, PUBLISHED_ABLATION

    key_of = {label: key for key, label in METRIC_LABELS.items()}
    documented = {}
    columns = None
    for cells in markdown_rows(section("docs/method.md", 9)):
        if cells[:2] == ["method", "set"]:
            columns = [key_of[label] for label in cells[2:]]
            continue
        values = dict(zip(columns, (float(v) for v in cells[2:])))
        documented[(cells[0], cells[1])] = {key: values.get(key) for key in METRIC_LABELS}
    assert documented == {**PUBLISHED, **PUBLISHED_ABLATION}


def test_every_job_is_in_the_readme_and_the_architecture_page():
    from jobs.cli import SUBCOMMANDS

    readme = (ROOT / "README.md").read_text()
    architecture = (ROOT / "docs/architecture.md").read_text()
    for name in SUBCOMMANDS:
        assert f"`{name}" in readme, f"README's job table lacks `{name}`"
        assert f"`{name}" in architecture, f"docs/architecture.md's job table lacks `{name}`"


def test_the_readme_points_to_every_docs_page_and_stays_short():
    readme = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in readme, f"README's documentation table lacks docs/{page.name}"
    assert "(bench/RESULTS.md)" in readme
    # A newcomer reads it in minutes; details belong in docs/ (the old README had grown to 590 lines).
    assert len(readme.splitlines()) < 200
