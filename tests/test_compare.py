"""Run comparison: published numbers, paired deltas with subject-bootstrap CIs, regressions, tables, plots.

Expected values come from straightforward computations written here, not from the code under test.
"""

import random

import numpy as np
import pytest
from PIL import Image

from metrics.deltas import compare_table, format_deltas, paired_deltas, plot_comparison, regressions
from metrics.published import PUBLISHED, PUBLISHED_ABLATION, published_rows
from metrics.records import RECORD_SCHEMA


def make_record(
    subject,
    prompt,
    seed=0,
    *,
    set_name="celebrity",
    method="ours",
    status="ok",
    dd=False,
    clip_t=0.25,
    clip_i=0.8,
    dino_i=0.7,
    t_cons=0.98,
    face_sim=0.8,
    face_frames=16,
):
    """A full score record; face_sim=None means no face in the video (objects: set_name='object')."""
    record = dict.fromkeys(RECORD_SCHEMA.names)
    record.update(
        video=f"{subject}-{prompt}-{seed}.mp4",
        subject_id=subject,
        prompt=prompt,
        seed=seed,
        reference=f"{subject}.png",
        set=set_name,
        method=method,
        status=status,
    )
    if status != "ok":
        return record
    record.update(frames=16, clip_t=clip_t, clip_i=clip_i, dino_i=dino_i, t_cons=t_cons, dd_dynamic=dd)
    if set_name == "object":
        record.update(subject_class="dog", face_status="not_scored")
    elif face_sim is None:
        record.update(subject_class="person", face_status="no_face_in_video", face_frames=0, face_detection_rate=0.0)
    else:
        record.update(
            subject_class="person", face_status="scored", face_sim=face_sim, face_frames=face_frames, face_detection_rate=face_frames / 16
        )
    return record


def noisy_run(n_subjects, *, seed, shift=0.0, method="ours", videos_per_subject=4):
    """Records whose clip_t is a subject effect plus video noise (plus `shift`), DD random."""
    rng = np.random.default_rng(seed)
    records = []
    for s in range(n_subjects):
        subject_effect = rng.normal(0, 0.02)
        for p in range(videos_per_subject):
            records.append(
                make_record(
                    f"s{s:03d}",
                    f"p{p}",
                    method=method,
                    clip_t=0.25 + subject_effect + rng.normal(0, 0.01) + shift,
                    dd=bool(rng.random() < 0.4),
                )
            )
    return records


def subject_first_mean(records, field):
    """docs/method.md section 7 by hand: mean per subject, then over subjects."""
    per_subject = {}
    for r in records:
        per_subject.setdefault(r["subject_id"], []).append(r[field])
    return sum(sum(v) / len(v) for v in per_subject.values()) / len(per_subject)


def by_metric(deltas):
    return {d.metric: d for d in deltas}


# Uneven subjects: a has 3 videos, b 1, c 2, so subject-first and pooled means differ.
BASE = [
    make_record("a", "p1", clip_t=0.20, face_sim=0.70, dd=True),
    make_record("a", "p2", clip_t=0.22, face_sim=0.72, dd=False),
    make_record("a", "p3", clip_t=0.24, face_sim=0.74, dd=False),
    make_record("b", "p1", clip_t=0.30, face_sim=0.80, dd=True),
    make_record("c", "p1", clip_t=0.26, face_sim=0.60, dd=False),
    make_record("c", "p2", clip_t=0.28, face_sim=0.62, dd=False),
]
CAND = [
    make_record("a", "p1", clip_t=0.21, face_sim=0.75, dd=True, method="new"),
    make_record("a", "p2", clip_t=0.25, face_sim=None, dd=True, method="new"),  # no face: skipped for Face Sim
    make_record("a", "p3", clip_t=0.23, face_sim=0.70, dd=True, method="new"),
    make_record("b", "p1", clip_t=0.35, face_sim=0.90, dd=False, method="new"),
    make_record("c", "p1", clip_t=0.20, face_sim=0.65, dd=True, method="new"),
    make_record("c", "p2", clip_t=0.30, face_sim=0.66, dd=False, method="new"),
]


# --- published numbers ------------------------------------------------------------------------


def test_published_values_as_typed_from_the_spec():
    assert PUBLISHED[("VideoMaker", "celebrity")] == {
        "clip_t": 0.2586,
        "face_sim": 0.8047,
        "clip_i": 0.8285,
        "dino_i": 0.7119,
        "t_cons": 0.9818,
        "dd": 0.3725,
    }
    assert PUBLISHED[("VideoMaker", "non_celebrity")]["face_sim"] == 0.6974
    assert PUBLISHED[("VideoMaker", "object")] == {
        "clip_t": 0.284,
        "face_sim": None,
        "clip_i": 0.8071,
        "dino_i": 0.7326,
        "t_cons": 0.9848,
        "dd": 0.5132,
    }
    assert PUBLISHED[("VideoBooth", "object")]["dino_i"] == 0.6658
    assert PUBLISHED[("ID-Animator", "celebrity")]["clip_i"] == 0.4719
    assert PUBLISHED[("PhotoMaker (SDXL)", "celebrity")]["dd"] == 0.3675
    assert PUBLISHED_ABLATION[("+update motion", "celebrity")]["face_sim"] == 0.8563
    assert PUBLISHED_ABLATION[("PISA only", "celebrity")]["dd"] == 0.2725


def test_published_rows_are_complete_and_labelled():
    for (method, set_name), metrics in {**PUBLISHED, **PUBLISHED_ABLATION}.items():
        present = [key for key, value in metrics.items() if value is not None]
        if set_name == "object":
            assert metrics["face_sim"] is None and len(present) == 5, method
        else:
            assert len(present) == 6, method
    assert [r["method"] for r in published_rows("celebrity")] == [
        "VideoMaker",
        "IP-Adapter",
        "IP-Adapter-Plus",
        "IP-Adapter-FaceID",
        "ID-Animator",
        "PhotoMaker (SDXL)",
    ]
    assert [r["method"] for r in published_rows("object")] == ["VideoMaker", "VideoBooth"]
    ablation = published_rows("celebrity", ablation=True)
    assert [r["method"] for r in ablation] == ["PISA only", "+GIRL", "+ref in cross-attn", "+update motion", "+SHP"]
    assert {k: v for k, v in ablation[-1].items() if k != "method"} == {
        k: v for k, v in published_rows("celebrity")[0].items() if k != "method"
    }  # +SHP is the full model
    assert all(r["source"] == "paper" for r in ablation)
    with pytest.raises(ValueError, match="set_name.*Available"):
        published_rows("custom")


# --- paired deltas ----------------------------------------------------------------------------


def test_deltas_equal_a_hand_computation_with_subject_first_averaging():
    deltas = by_metric(paired_deltas(BASE, CAND, set_name="celebrity", n_boot=200))
    clip = deltas["clip_t"]
    assert clip.baseline == pytest.approx(((0.20 + 0.22 + 0.24) / 3 + 0.30 + (0.26 + 0.28) / 2) / 3)
    assert clip.candidate == pytest.approx(((0.21 + 0.25 + 0.23) / 3 + 0.35 + (0.20 + 0.30) / 2) / 3)
    assert clip.delta == pytest.approx(clip.candidate - clip.baseline)
    assert clip.baseline != pytest.approx(np.mean([r["clip_t"] for r in BASE]))  # pooling would differ
    assert (clip.n_pairs, clip.n_subjects, clip.unpaired_baseline, clip.unpaired_candidate) == (6, 3, 0, 0)
    dd = deltas["dd"]
    assert (dd.baseline, dd.candidate, dd.delta) == pytest.approx((2 / 6, 4 / 6, 2 / 6))  # pooled over videos
    assert set(deltas) == {"clip_t", "face_sim", "clip_i", "dino_i", "t_cons", "dd"}
    assert deltas["clip_i"].delta == pytest.approx(0.0)


def test_face_sim_pairs_only_where_both_videos_have_a_face():
    face = by_metric(paired_deltas(BASE, CAND, set_name="celebrity", n_boot=200))["face_sim"]
    assert face.n_pairs == 5 and face.n_subjects == 3
    kept = [(b, c) for b, c in zip(BASE, CAND) if c["face_sim"] is not None]
    assert face.baseline == pytest.approx(subject_first_mean([b for b, _ in kept], "face_sim"))
    assert face.candidate == pytest.approx(subject_first_mean([c for _, c in kept], "face_sim"))
    assert face.baseline == pytest.approx(((0.70 + 0.74) / 2 + 0.80 + (0.60 + 0.62) / 2) / 3)
    assert "pairs without a value on one side: 1" in face.note


def test_object_set_has_no_face_sim_delta():
    base = [make_record(f"dog{i}", p, set_name="object", clip_t=0.2 + i / 100) for i in range(3) for p in "xy"]
    cand = [make_record(f"dog{i}", p, set_name="object", clip_t=0.3, method="new") for i in range(3) for p in "xy"]
    deltas = by_metric(paired_deltas(base, cand, set_name="object", n_boot=100))
    assert "face_sim" not in deltas
    assert deltas["clip_t"].delta == pytest.approx(0.3 - 0.21)


def test_bootstrap_matches_a_naive_loop_over_the_same_draws():
    base, cand = noisy_run(7, seed=1), noisy_run(7, seed=2, method="new")
    n_boot, seed = 300, 11
    deltas = by_metric(paired_deltas(base, cand, set_name="celebrity", n_boot=n_boot, seed=seed))
    subjects = sorted({r["subject_id"] for r in base})
    draws = np.random.default_rng(seed).integers(0, len(subjects), size=(n_boot, len(subjects)))
    clip_replicates, dd_replicates = [], []
    for row in draws:
        base_means, cand_means, base_dynamic, cand_dynamic, videos = [], [], 0, 0, 0
        for index in row:
            b = [r for r in base if r["subject_id"] == subjects[index]]
            c = [r for r in cand if r["subject_id"] == subjects[index]]
            base_means.append(np.mean([r["clip_t"] for r in b]))
            cand_means.append(np.mean([r["clip_t"] for r in c]))
            base_dynamic += sum(r["dd_dynamic"] for r in b)
            cand_dynamic += sum(r["dd_dynamic"] for r in c)
            videos += len(b)
        clip_replicates.append(np.mean(cand_means) - np.mean(base_means))
        dd_replicates.append((cand_dynamic - base_dynamic) / videos)
    for metric, replicates in (("clip_t", clip_replicates), ("dd", dd_replicates)):
        expected = np.percentile(replicates, [2.5, 97.5])
        assert (deltas[metric].ci_low, deltas[metric].ci_high) == pytest.approx(tuple(expected), abs=1e-12)


def test_ci_contains_the_delta_and_is_reproducible():
    base, cand = noisy_run(12, seed=3), noisy_run(12, seed=4, shift=0.01, method="new")
    first = by_metric(paired_deltas(base, cand, set_name="celebrity", seed=5))["clip_t"]
    again = by_metric(paired_deltas(base, cand, set_name="celebrity", seed=5))["clip_t"]
    other = by_metric(paired_deltas(base, cand, set_name="celebrity", seed=6))["clip_t"]
    assert first.ci_low < first.delta < first.ci_high
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    wider = by_metric(paired_deltas(base, cand, set_name="celebrity", seed=5, confidence=0.99))["clip_t"]
    assert wider.ci_low < first.ci_low and wider.ci_high > first.ci_high


def test_ci_narrows_with_more_subjects():
    def width(n_subjects):
        base, cand = noisy_run(n_subjects, seed=7), noisy_run(n_subjects, seed=8, method="new")
        clip = by_metric(paired_deltas(base, cand, set_name="celebrity", n_boot=500))["clip_t"]
        return clip.ci_high - clip.ci_low

    assert width(80) < 0.5 * width(5)


def test_ci_covers_a_true_zero_delta_about_as_often_as_stated():
    covered = 0
    for trial in range(100):
        noise = np.random.default_rng(trial)
        base = noisy_run(20, seed=1000 + trial, videos_per_subject=2)
        cand = [dict(r, clip_t=r["clip_t"] + noise.normal(0, 0.01), method="new") for r in base]  # true shift 0
        clip = by_metric(paired_deltas(base, cand, set_name="celebrity", n_boot=200, seed=trial))["clip_t"]
        covered += clip.ci_low <= 0.0 <= clip.ci_high
    assert 80 <= covered <= 99  # nominal 95 of 100; 20 subjects make a percentile bootstrap a little narrow


def test_pairing_ignores_order_and_reports_unpaired_samples():
    shuffled = CAND[:]
    random.Random(0).shuffle(shuffled)
    extra = [
        make_record("d", "p1", method="new"),  # subject only the candidate has
        make_record("a", "p9", method="new"),  # prompt only the candidate has
        make_record("a", "p1", seed=1, method="new"),  # seed only the candidate has
        make_record("x", "p1", set_name="non_celebrity", method="new"),  # other set: ignored
    ]
    base_extra = [make_record("b", "p2", status="error")]  # errors are not 'ok': not counted
    reference = by_metric(paired_deltas(BASE, CAND, set_name="celebrity", n_boot=200))
    mixed = by_metric(paired_deltas(BASE + base_extra, shuffled + extra, set_name="celebrity", n_boot=200))
    for metric, delta in reference.items():
        assert (mixed[metric].delta, mixed[metric].ci_low) == pytest.approx((delta.delta, delta.ci_low), abs=1e-12)
        assert (mixed[metric].unpaired_baseline, mixed[metric].unpaired_candidate) == (0, 3)
    fewer = by_metric(paired_deltas(BASE, CAND[1:], set_name="celebrity", n_boot=200))["clip_t"]
    assert (fewer.n_pairs, fewer.unpaired_baseline, fewer.unpaired_candidate) == (5, 1, 0)


def test_single_subject_has_no_ci_and_says_why():
    base = [make_record("a", p, clip_t=0.2) for p in "xyz"]
    cand = [make_record("a", p, clip_t=0.1, method="new") for p in "xyz"]
    clip = by_metric(paired_deltas(base, cand, set_name="celebrity"))["clip_t"]
    assert clip.ci_low is None and clip.ci_high is None and "1 subject" in clip.note
    assert [r.metric for r in regressions([clip], {"clip_t": 0.05})] == ["clip_t"]  # falls back to the delta
    assert regressions([clip], {"clip_t": 0.2}) == []


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="n_boot"):
        paired_deltas(BASE, CAND, set_name="celebrity", n_boot=0)
    with pytest.raises(ValueError, match="confidence"):
        paired_deltas(BASE, CAND, set_name="celebrity", confidence=95)
    with pytest.raises(ValueError, match="`set_name`=.object.*celebrity"):
        paired_deltas(BASE, CAND, set_name="object")
    with pytest.raises(ValueError, match="candidate_records.*two 'ok' records"):
        paired_deltas(BASE, CAND + CAND[:1], set_name="celebrity")
    with pytest.raises(ValueError, match="tolerances.*unknown.*CLIP-T"):
        regressions([], {"CLIP-T": 0.01})
    with pytest.raises(ValueError, match="tolerances.*>= 0"):
        regressions([], {"clip_t": -0.01})


# --- regressions ------------------------------------------------------------------------------


def test_a_constant_fall_beyond_the_tolerance_is_a_regression():
    base = noisy_run(6, seed=9)
    cand = [dict(r, clip_t=r["clip_t"] - 0.05, method="new") for r in base]
    deltas = paired_deltas(base, cand, set_name="celebrity")
    found = regressions(deltas, {"clip_t": 0.01, "dd": 0.0})
    assert [(r.set, r.metric) for r in found] == [("celebrity", "clip_t")]
    assert found[0].delta == pytest.approx(-0.05)
    assert "celebrity CLIP-T fell by 0.0500 (95 % CI -0.0500..-0.0500), beyond the tolerance 0.01" == found[0].message
    assert regressions(deltas, {"clip_t": 0.1}) == []


def test_no_change_is_never_a_regression():
    base = noisy_run(10, seed=10)
    cand = [dict(r, method="new") for r in base]
    deltas = paired_deltas(base, cand, set_name="celebrity")
    assert all(d.delta == 0 and d.ci_low == 0 and d.ci_high == 0 for d in deltas)
    assert regressions(deltas, dict.fromkeys(["clip_t", "face_sim", "clip_i", "dino_i", "t_cons", "dd"], 0.0)) == []


# --- tables and plots -------------------------------------------------------------------------


def test_format_deltas_lists_each_metric_with_its_interval():
    text = format_deltas(paired_deltas(BASE, CAND, set_name="celebrity", n_boot=200))
    assert "celebrity CLIP-T" in text and "celebrity Face Sim" in text and "celebrity DD" in text
    assert "95 % [" in text and "pairs without a value on one side: 1" in text


def test_compare_table_shows_runs_counts_and_paper_rows():
    objects = [make_record(f"dog{i}", "x", set_name="object") for i in range(3)]
    text = compare_table([("ours-v2", BASE + objects), ("new", CAND + [make_record("z", "p", status="error", method="new")])])
    celebrity, objects_section = text.split("\n\nobject\n")
    assert celebrity.startswith("celebrity") and "ours-v2" in celebrity and "new" in celebrity
    ours_line = next(line for line in celebrity.splitlines() if line.startswith("ours-v2"))
    expected_clip = subject_first_mean(BASE, "clip_t")
    assert ours_line.split()[1:4] == ["6", "0", f"{expected_clip:.4f}"]
    new_line = next(line for line in celebrity.splitlines() if line.startswith("new "))
    assert new_line.split()[1:3] == ["6", "1"]
    assert new_line.endswith("83.3%")  # 5 of 6 videos have a face in all 16 frames
    paper = next(line for line in celebrity.splitlines() if line.startswith("VideoMaker (paper)"))
    assert paper.split()[-7:] == ["0.2586", "0.8047", "0.8285", "0.7119", "0.9818", "0.3725", "-"]
    assert "IP-Adapter-FaceID (paper)" in celebrity and "VideoBooth (paper)" not in celebrity
    assert "VideoBooth (paper)" in objects_section and "ours-v2" in objects_section
    assert "(paper)" not in compare_table([("ours", BASE)], include_published=False)


def test_compare_table_refuses_mixed_methods_and_duplicate_labels():
    with pytest.raises(ValueError, match="'mixed' mixes methods"):
        compare_table([("mixed", BASE + CAND)])
    with pytest.raises(ValueError, match="labels must be distinct"):
        compare_table([("a", BASE), ("a", CAND)])


def test_plot_writes_a_png(tmp_path):
    objects = [make_record(f"dog{i}", "x", set_name="object") for i in range(3)]
    path = plot_comparison([("ours", BASE + objects), ("new", CAND)], tmp_path / "plots" / "compare.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 0
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 0 and image.size[1] > image.size[0] / 2  # two panels
