"""Compare runs of score records: paired deltas with confidence intervals, regressions, tables, plots.

Every number follows docs/method.md, section 7 (`metrics.aggregate.aggregate_set`): per-subject means, then the
mean over subjects; DD pooled over videos. Because subjects are averaged first, subjects are the
independent units, so confidence intervals come from a bootstrap that resamples subjects.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metrics.aggregate import METRIC_LABELS, aggregate_set
from metrics.published import PUBLISHED_SETS, published_rows
from metrics.tables import render_table

METRICS = tuple(METRIC_LABELS)  # clip_t, face_sim, clip_i, dino_i, t_cons, dd; higher is better for all
_RECORD_FIELD = {"dd": "dd_dynamic"}  # the per-video field behind each set-level metric, when named otherwise
_PAIR_KEY = ("subject_id", "prompt", "seed")


@dataclass(frozen=True)
class MetricDelta:
    """Candidate minus baseline for one metric of one set, over the samples both runs scored.

    Fields:
        set, metric: The benchmark set and metric key (`METRIC_LABELS` gives its printed name).
        baseline, candidate: docs/method.md section 7 aggregates over the paired samples only; None when no pair has both.
        delta: candidate - baseline; None when no pair has both values.
        ci_low, ci_high: Percentile subject-bootstrap interval of delta at `confidence`; None when
            fewer than 2 subjects (nothing to resample) or no delta.
        n_pairs, n_subjects: Pairs and subjects behind delta (for Face Sim, pairs with a face on both sides).
        unpaired_baseline, unpaired_candidate: "ok" records of the set whose (subject_id, prompt, seed)
            the other run lacks (or holds only as an error); left out of every metric.
        note: Why a value is missing or which pairs were skipped; empty when nothing was.
    """

    set: str
    metric: str
    baseline: float | None
    candidate: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    n_pairs: int
    n_subjects: int
    confidence: float
    unpaired_baseline: int
    unpaired_candidate: int
    note: str = ""

    @property
    def label(self) -> str:
        return METRIC_LABELS[self.metric]


@dataclass(frozen=True)
class Regression:
    """A metric whose fall exceeds its tolerance even at the optimistic end of its interval."""

    set: str
    metric: str
    delta: float
    ci_low: float | None
    ci_high: float | None
    confidence: float
    tolerance: float

    @property
    def message(self) -> str:
        if self.ci_low is None or self.ci_high is None:
            interval = "no CI"
        else:
            interval = f"{_percent(self.confidence)} CI {self.ci_low:.4f}..{self.ci_high:.4f}"
        return f"{self.set} {METRIC_LABELS[self.metric]} fell by {-self.delta:.4f} ({interval}), beyond the tolerance {self.tolerance:g}"


def _percent(confidence: float) -> str:
    return f"{confidence * 100:g} %"


def _ok_records_by_key(records: list[dict], set_name: str, argument: str) -> dict[tuple, dict]:
    keyed: dict[tuple, dict] = {}
    for record in records:
        if record["status"] != "ok" or record["set"] != set_name:
            continue
        key = tuple(record[name] for name in _PAIR_KEY)
        if key in keyed:
            raise ValueError(
                f"`{argument}` has two 'ok' records of set {set_name!r} for (subject_id, prompt, seed)={key!r}; "
                "pairing needs one per key: drop the duplicate or give each video its own seed."
            )
        keyed[key] = record
    return keyed


def _subject_contributions(pairs: list[tuple[dict, dict]], field: str, *, pooled: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per subject (sorted by id) the numerator and weight whose ratio of sums is the delta.

    Subject-first metrics: (mean difference, 1), so the ratio is the mean over subjects.
    Pooled DD: (sum of differences, number of videos), so the ratio is the pooled difference.
    """
    differences: dict[str, list[float]] = defaultdict(list)
    for baseline, candidate in pairs:
        differences[baseline["subject_id"]].append(float(candidate[field]) - float(baseline[field]))
    per_subject = [np.asarray(differences[subject]) for subject in sorted(differences)]
    if pooled:
        return np.array([d.sum() for d in per_subject]), np.array([float(d.size) for d in per_subject])
    return np.array([d.mean() for d in per_subject]), np.ones(len(per_subject))


def subject_bootstrap_ci(numerators: np.ndarray, weights: np.ndarray, *, n_boot: int, seed: int, confidence: float) -> tuple[float, float]:
    """Percentile interval of sum(numerators[s]) / sum(weights[s]) over subjects s drawn with replacement.

    The draws are one `np.random.default_rng(seed).integers(0, S, size=(n_boot, S))` call, row b
    being replicate b, so a loop over those rows reproduces it exactly.
    """
    draws = np.random.default_rng(seed).integers(0, len(numerators), size=(n_boot, len(numerators)))
    replicates = numerators[draws].sum(axis=1) / weights[draws].sum(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    return float(low), float(high)


def _metric_delta(pairs, metric, *, set_name, unpaired, n_boot, seed, confidence) -> MetricDelta | None:
    """One metric's delta over `pairs`; None when neither run scored it (so it is not comparable)."""
    field = _RECORD_FIELD.get(metric, metric)
    if all(record[field] is None for pair in pairs for record in pair):
        return None  # not scored in either run (Face Sim on objects): nothing to compare
    scored = [(b, c) for b, c in pairs if b[field] is not None and c[field] is not None]
    notes = [f"pairs without a value on one side: {len(pairs) - len(scored)}"] if len(scored) < len(pairs) else []
    common = dict(set=set_name, metric=metric, confidence=confidence, unpaired_baseline=unpaired[0], unpaired_candidate=unpaired[1])
    if not scored:
        return MetricDelta(
            baseline=None,
            candidate=None,
            delta=None,
            ci_low=None,
            ci_high=None,
            n_pairs=0,
            n_subjects=0,
            note="; ".join(notes),
            **common,
        )
    baseline = aggregate_set([b for b, _ in scored])[metric]
    candidate = aggregate_set([c for _, c in scored])[metric]
    numerators, weights = _subject_contributions(scored, field, pooled=metric == "dd")
    if len(numerators) < 2:
        ci_low = ci_high = None
        notes.append("1 subject: no CI, a subject bootstrap needs at least 2")
    else:
        ci_low, ci_high = subject_bootstrap_ci(numerators, weights, n_boot=n_boot, seed=seed, confidence=confidence)
    return MetricDelta(
        baseline=baseline,
        candidate=candidate,
        delta=candidate - baseline,
        ci_low=ci_low,
        ci_high=ci_high,
        n_pairs=len(scored),
        n_subjects=len(numerators),
        note="; ".join(notes),
        **common,
    )


def paired_deltas(
    baseline_records: list[dict],
    candidate_records: list[dict],
    *,
    set_name: str,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[MetricDelta]:
    """Candidate minus baseline per metric of one set, on the videos both runs scored, with subject-bootstrap CIs.

    Videos pair by (subject_id, prompt, seed) among "ok" records of `set_name`; the rest are
    counted as unpaired. Each metric then uses the pairs where both sides have a value (Face Sim:
    a face in both videos). The interval resamples subjects with replacement (`subject_bootstrap_ci`,
    one fresh generator from `seed` per metric), since the aggregate averages subjects first.

    Args:
        baseline_records, candidate_records: Score records (`metrics.records.RECORD_SCHEMA`) of the two runs.
        set_name: The benchmark set to compare.
        n_boot: Bootstrap replicates (default 2000).
        seed: Seed of the bootstrap's `np.random.Generator`; the same seed gives the same interval.
        confidence: Two-sided level of the interval (default 0.95).

    Returns:
        One `MetricDelta` per metric that either run scored, in `METRICS` order.

    Example:
        >>> deltas = paired_deltas(baseline, candidate, set_name="celebrity")
        >>> print(format_deltas(deltas))
    """
    if not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"`n_boot` must be a positive integer, got {n_boot!r}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must lie strictly between 0 and 1 (e.g. 0.95), got {confidence!r}.")
    baseline = _ok_records_by_key(baseline_records, set_name, "baseline_records")
    candidate = _ok_records_by_key(candidate_records, set_name, "candidate_records")
    keys = sorted(baseline.keys() & candidate.keys(), key=lambda key: tuple(map(str, key)))
    if not keys:
        sets = sorted({str(r["set"]) for r in [*baseline_records, *candidate_records] if r["status"] == "ok"})
        raise ValueError(
            f"No video of `set_name`={set_name!r} is scored in both runs (baseline {len(baseline)} 'ok', "
            f"candidate {len(candidate)} 'ok'; sets with 'ok' records: {sets}). Pairs need the same "
            "(subject_id, prompt, seed): were both runs made from the same manifest and seeds?"
        )
    pairs = [(baseline[key], candidate[key]) for key in keys]
    unpaired = (len(baseline) - len(keys), len(candidate) - len(keys))
    deltas = [
        _metric_delta(pairs, metric, set_name=set_name, unpaired=unpaired, n_boot=n_boot, seed=seed, confidence=confidence)
        for metric in METRICS
    ]
    return [delta for delta in deltas if delta is not None]


def regressions(deltas: list[MetricDelta], tolerances: dict[str, float]) -> list[Regression]:
    """The metrics that fell by more than their tolerance beyond their confidence interval.

    Rule: higher is better for every metric, so a metric regresses when even the upper end of the
    interval of (candidate - baseline) lies below -tolerance, i.e. `ci_high < -tolerance`; without
    an interval (one subject) the point estimate decides, `delta < -tolerance`. A metric without a
    delta (no pair scored on both sides) cannot be judged and is not reported here; `format_deltas`
    shows it as n/a.

    Args:
        deltas: From `paired_deltas`.
        tolerances: Metric key (e.g. "clip_t") -> allowed fall, >= 0; only the metrics named are judged.
    """
    unknown = sorted(set(tolerances) - set(METRICS))
    if unknown:
        raise ValueError(f"`tolerances` names unknown metrics {unknown}. Available: {list(METRICS)}")
    negative = {metric: value for metric, value in tolerances.items() if value < 0}
    if negative:
        raise ValueError(f"`tolerances` must be >= 0 (an allowed fall), got {negative}.")
    found = []
    for delta in deltas:
        if delta.metric not in tolerances or delta.delta is None:
            continue
        tolerance = tolerances[delta.metric]
        optimistic = delta.ci_high if delta.ci_high is not None else delta.delta
        if optimistic < -tolerance:
            found.append(Regression(delta.set, delta.metric, delta.delta, delta.ci_low, delta.ci_high, delta.confidence, tolerance))
    return found


def _number(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.4f}" if sign else f"{value:.4f}"


def format_deltas(deltas: list[MetricDelta]) -> str:
    """The deltas as a plain-text table: aggregates, delta, interval, pairs, subjects, unpaired, notes."""
    rows = []
    for d in deltas:
        interval = "n/a" if d.ci_low is None else f"{_percent(d.confidence)} [{d.ci_low:+.4f}, {d.ci_high:+.4f}]"
        rows.append(
            [
                f"{d.set} {d.label}",
                _number(d.baseline),
                _number(d.candidate),
                _number(d.delta, sign=True),
                interval,
                str(d.n_pairs),
                str(d.n_subjects),
                f"{d.unpaired_baseline}/{d.unpaired_candidate}",
                d.note,
            ]
        )
    header = ["metric", "baseline", "candidate", "delta", "CI", "pairs", "subjects", "unpaired b/c", "note"]
    return render_table(header, rows, text_columns=(0, -1))


@dataclass(frozen=True)
class _Row:
    label: str
    metrics: dict
    published: bool = False
    videos: int | None = None
    errors: int | None = None
    face_detection_rate: float | None = None


def _rows_by_set(runs: list[tuple[str, list[dict]]], include_published: bool, ablation: bool = False) -> dict[str, list[_Row]]:
    """Per set present in the runs (paper sets first): one row per run, then the paper's rows."""
    if not runs:
        raise ValueError("`runs` is empty; give a list of (label, records) pairs.")
    labels = [label for label, _ in runs]
    if len(set(labels)) != len(labels) or not all(isinstance(label, str) and label for label in labels):
        raise ValueError(f"`runs` labels must be distinct non-empty strings, got {labels}.")
    sets = {str(record["set"]) for _, records in runs for record in records}
    if not sets:
        raise ValueError("`runs` hold no records.")
    ordered = [s for s in PUBLISHED_SETS if s in sets] + sorted(sets - set(PUBLISHED_SETS))
    table: dict[str, list[_Row]] = {}
    for set_name in ordered:
        rows = []
        for label, records in runs:
            of_set = [record for record in records if record["set"] == set_name]
            if not of_set:
                continue
            methods = sorted({str(record["method"]) for record in of_set})
            if len(methods) > 1:
                raise ValueError(
                    f"`runs` entry {label!r} mixes methods {methods} in set {set_name!r}; give each method its own (label, records) entry."
                )
            summary = aggregate_set(of_set)
            rows.append(_Row(label, summary, False, summary["videos"], summary["errors"], summary["face_detection_rate"]))
        if include_published and set_name in PUBLISHED_SETS:
            rows += [_Row(f"{row['method']} (paper)", row, published=True) for row in published_rows(set_name, ablation=ablation)]
        table[set_name] = rows
    return table


def compare_table(runs: list[tuple[str, list[dict]]], *, include_published: bool = True, ablation: bool = False) -> str:
    """A paper-style plain-text table per set: each run's docs/method.md section 7 aggregates, then the paper's rows.

    Args:
        runs: (label, score records) per run; a run may span sets but holds one method per set.
        include_published: Add the paper's rows of each set, labelled "(paper)" (default True).
        ablation: The paper's ablation rows (Table 3, celebrity set) instead of its method comparison.

    Returns:
        Per set a title line and a table with N (scored videos), errors, the six metrics and the
        face detection rate; "-" where a count is not published, "n/a" where a metric is missing.

    Example:
        >>> print(compare_table([("ours", records), ("baseline", baseline_records)]))
    """
    header = ["method", "N", "errors", *METRIC_LABELS.values(), "face det."]
    sections = []
    for set_name, rows in _rows_by_set(runs, include_published, ablation).items():
        body = [
            [
                row.label,
                "-" if row.videos is None else str(row.videos),
                "-" if row.errors is None else str(row.errors),
                *(_number(row.metrics[metric]) for metric in METRICS),
                "-" if row.face_detection_rate is None else f"{row.face_detection_rate:.1%}",
            ]
            for row in rows
        ]
        sections.append(f"{set_name}\n{render_table(header, body)}")
    return "\n\n".join(sections)


def plot_comparison(
    runs: list[tuple[str, list[dict]]], path: str | Path, *, include_published: bool = True, ablation: bool = False
) -> Path:
    """A PNG with one panel per set: grouped bars of each metric per run (paper rows hatched).

    Args:
        runs: As for `compare_table`.
        path: Where the PNG is written (parent folders are created).
        include_published: Add the paper's rows of each set (default True).
        ablation: The paper's ablation rows instead of its method comparison.

    Returns:
        `path` as a `Path`.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("`plot_comparison` needs matplotlib: `pip install matplotlib`.") from error

    sections = _rows_by_set(runs, include_published, ablation)
    figure = Figure(figsize=(11, 3.6 * len(sections)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(sections), 1, squeeze=False)[:, 0]
    positions = np.arange(len(METRICS))
    for axis, (set_name, rows) in zip(axes, sections.items()):
        width = 0.8 / len(rows)
        for i, row in enumerate(rows):
            heights = [np.nan if row.metrics[metric] is None else row.metrics[metric] for metric in METRICS]
            axis.bar(
                positions + (i - (len(rows) - 1) / 2) * width,
                heights,
                width,
                label=row.label,
                hatch="//" if row.published else None,
            )
        axis.set_xticks(positions, list(METRIC_LABELS.values()))
        axis.set_title(set_name)
        axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path
