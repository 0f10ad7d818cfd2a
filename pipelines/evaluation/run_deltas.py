"""Deltas between evaluation runs from MLflow: the paper-style table, paired deltas against the first run, a chart."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from metrics.deltas import MetricDelta, compare_table, format_deltas, paired_deltas, plot_comparison
from metrics.opens2v import compare_section as opens2v_section
from pipelines.evaluation.runs import find_evaluation_run, load_samples
from videomaker import storage


@dataclass
class Comparison:
    """Labels of the runs (baseline first), the table, the deltas of each later run and the files written."""

    labels: list[str]
    table: str
    deltas: dict[str, list[MetricDelta]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def text(self) -> str:
        parts = [self.table]
        for label, deltas in self.deltas.items():
            parts.append(
                f"\n{label} - {self.labels[0]} (paired by subject, prompt, seed; 95 % CI, subject bootstrap)\n" + format_deltas(deltas)
            )
        return "\n".join(parts)


def _labels(runs) -> list[str]:
    """Run names, with a short id where two runs share a name."""
    names = [run.info.run_name for run in runs]
    return [name if names.count(name) == 1 else f"{name}@{run.info.run_id[:8]}" for name, run in zip(names, runs)]


def compare_records(
    labelled: list[tuple[str, list[dict]]], *, include_published: bool = True, ablation: bool = False, n_boot: int = 2000, seed: int = 0
) -> Comparison:
    """Table of every run; deltas of each later run against the first, per set both ran."""
    table = compare_table(labelled, include_published=include_published, ablation=ablation)
    opens2v = opens2v_section(labelled, include_published=include_published)  # OpenS2V sets: its TotalScore and leaderboard rows
    comparison = Comparison([label for label, _ in labelled], f"{table}\n\n{opens2v}" if opens2v else table)
    baseline_label, baseline = labelled[0]
    for label, records in labelled[1:]:
        shared = sorted({r["set"] for r in baseline} & {r["set"] for r in records})
        comparison.deltas[label] = [
            delta for set_name in shared for delta in paired_deltas(baseline, records, set_name=set_name, n_boot=n_boot, seed=seed)
        ]
    return comparison


def compare_runs(
    references: list[str],
    *,
    tracking_uri: str,
    experiment: str | None = None,
    output_dir: str | Path | None = None,
    include_published: bool = True,
    ablation: bool = False,
    n_boot: int = 2000,
) -> Comparison:
    """Fetch evaluation runs by id or name and compare them; with `output_dir`, write text, JSON and PNG."""
    if len(references) < 1:
        raise ValueError("`runs`: give at least one evaluation run id or name.")
    if output_dir is not None:
        storage.check_access(output_dir, argument="`output_dir`", write=True)
    runs = [find_evaluation_run(ref, tracking_uri=tracking_uri, experiment=experiment) for ref in references]
    labelled = [(label, load_samples(run, tracking_uri=tracking_uri)) for label, run in zip(_labels(runs), runs)]
    comparison = compare_records(labelled, include_published=include_published, ablation=ablation, n_boot=n_boot)
    if output_dir is not None:
        out = storage.absolute(output_dir)
        storage.write_text(storage.join(out, "comparison.txt"), comparison.text() + "\n")
        deltas = {label: [asdict(d) for d in ds] for label, ds in comparison.deltas.items()}
        runs_info = [{"label": label, "run_id": run.info.run_id} for label, run in zip(comparison.labels, runs)]
        storage.write_text(storage.join(out, "comparison.json"), json.dumps({"runs": runs_info, "deltas": deltas}, indent=2))
        with tempfile.TemporaryDirectory() as scratch:
            chart = plot_comparison(labelled, Path(scratch) / "comparison.png", include_published=include_published, ablation=ablation)
            storage.upload_file(chart, storage.join(out, "comparison.png"))
        comparison.files = [storage.join(out, name) for name in ("comparison.txt", "comparison.json", "comparison.png")]
    return comparison
