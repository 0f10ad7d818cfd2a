"""grid.html's per-frame evidence, rendered by real headless Chromium (tests/browser.py).

The page is written from records like scoring makes them: a video with a face in some frames only,
one whose reference has no face, an unreadable video, and an opt-in metric left empty. The browser
must show one evidence block per video, the frames without a face, and each reason in words.
"""

import json

import numpy as np
import pytest
from PIL import Image

from browser import chromium_page, require_chromium, screenshot
from metrics.records import RECORD_SCHEMA
from pipelines.evaluation.report import write_set_page

FRAMES = 8
NO_FACE = (3, 5)  # frames of the first video without a face
PAIRS = [0.5, 2.0, 3.5, 0.1, 4.0, 0.2, 5.0]  # DD's flow score per pair; threshold 1.0 below
HOSTILE = "Video 'x<b>bold</b>.mp4' is not a video & cannot be read"  # record text must be escaped, not rendered


def gif(path, seed):
    rng = np.random.default_rng(seed)
    frames = [Image.fromarray(rng.integers(0, 255, (48, 64, 3), np.uint8)) for _ in range(FRAMES)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=125, loop=0)
    return str(path)


def record(**values):
    row = dict.fromkeys(RECORD_SCHEMA.names)
    row.update(set="celebrity", subject_class="person", method="ours", seed=0, status="ok", metric_groups="paper", face_protocol="paper")
    row.update(backends=json.dumps({"clip": {}, "dino": {}, "face": {}, "flow": {}}))
    row.update(values)
    return row


def scored(video, reference, *, found, sims, **values):
    clip, dino = [0.70 + 0.01 * k for k in range(FRAMES)], [0.40 + 0.02 * k for k in range(FRAMES)]
    return record(
        video=video,
        reference=reference,
        frames=FRAMES,
        clip_t=0.3,
        clip_i=float(np.mean(clip)),
        dino_i=float(np.mean(dino)),
        t_cons=0.95,
        frame_clip_i=clip,
        frame_dino_i=dino,
        frame_face_found=found,
        frame_face_box=[[1.0, 2.0, 30.0, 40.0] if f else None for f in found],
        frame_face_det_score=[0.9 if f else None for f in found],
        frame_face_sim=sims,
        face_frames=sum(found),
        dd_pair_scores=PAIRS,
        dd_threshold=1.0,
        dd_pairs_above=sum(p > 1.0 for p in PAIRS),
        dd_pairs_required=2,
        dd_dynamic=True,
        **values,
    )


def cell(page, **has):
    """The grid cell of one video (the one holding an evidence block) matching `has`."""
    return page.locator("td", has=page.locator("div.evidence")).filter(**has)


@pytest.fixture
def page_file(tmp_path):
    root = tmp_path / "celebrity"
    root.mkdir()
    face_ref, faceless_ref = root / "ref.png", root / "faceless.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(face_ref)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(faceless_ref)
    found = [k not in NO_FACE for k in range(FRAMES)]
    some_faces = scored(
        gif(root / "a.gif", 0),
        str(face_ref),
        found=found,
        sims=[0.6 if f else None for f in found],
        subject_id="anna",
        prompt="A woman reading.",
        face_sim=0.6,
        face_status="scored",
        metric_groups="paper,opens2v",
        motion_amplitude=0.4,
        facesim_cur=0.5,
        natural_score=None,
        message="NaturalScore: the judge at http://127.0.0.1:9/v1 refused the connection",
    )
    some_faces["backends"] = json.dumps({"clip": {}, "dino": {}, "face": {}, "flow": {}, "face_cur": {}, "natural": {}})
    no_reference_face = scored(
        gif(root / "b.gif", 1),
        str(faceless_ref),
        found=[True] * FRAMES,
        sims=[None] * FRAMES,
        subject_id="bob",
        prompt="A man cooking.",
        face_status="reference_has_no_face",
        message=f"Reference image {str(faceless_ref)!r} has no detectable face; Face Sim not scored.",
    )
    broken = record(
        video=str(root / "broken.mp4"),
        reference=str(face_ref),
        subject_id="anna",
        prompt="A woman reading.",
        seed=1,
        status="error",
        error="video_unreadable",
        message=HOSTILE,
    )
    page = write_set_page([some_faces, no_reference_face, broken], root / "grid.html", title="run: celebrity")
    return page, (some_faces, no_reference_face, broken)


def test_grid_page_shows_each_videos_evidence_and_why_scores_are_missing(page_file, tmp_path):
    require_chromium()
    page_path, records = page_file
    text = open(page_path, encoding="utf-8").read()
    assert text.count("<td><a href=") == 2  # a linked strip per readable video, as tests/test_evaluate.py counts them
    assert "<script" not in text and "http://" not in text.replace("http://127.0.0.1:9/v1", "")  # self-contained, no JS
    with chromium_page(width=1400, height=1000) as page:
        page.goto(f"file://{page_path}")
        blocks = page.locator("div.evidence")
        assert blocks.count() == len(records)  # one per video, errors included
        first = cell(page, has_text="Face 0.600").locator("div.evidence")
        assert first.count() == 1
        # Per-frame row: a mark per frame, the faceless ones marked so; DD pairs above the threshold marked.
        assert first.locator("tr.face-found td").count() == FRAMES
        assert first.locator("tr.face-found td.noface").count() == len(NO_FACE)
        assert first.locator("tr.frame-clip-i td").count() == FRAMES
        assert first.locator("tr.frame-clip-i td").nth(7).inner_text() == "0.77"
        assert first.locator("tr.face-sim td").nth(NO_FACE[0]).inner_text() == "–"
        assert first.locator("tr.dd-pairs td.above").count() == sum(p > 1.0 for p in PAIRS)
        assert "4 of 7 pairs above the threshold 1.00 (2 needed): dynamic" in first.locator(".dd-summary").inner_text()
        reasons = first.locator("ul.reasons li").all_inner_texts()
        assert "No face in frame(s) 3, 5; Face Sim averages the other 6 of 8." in reasons
        assert any(r.startswith("aes_score (opens2v group) left empty: no `aesthetic` backend configured") for r in reasons)
        assert any("natural_score (opens2v group) left empty: NaturalScore: the judge" in r for r in reasons)
        assert not any(r.startswith(("motion_amplitude", "facesim_cur")) for r in reasons)  # those have values

        bob = cell(page, has=page.locator("a[href='b.gif']")).locator("ul.reasons li")
        assert bob.all_inner_texts() == ["Reference without a face: Face Sim not scored."]
        assert cell(page, has=page.locator("a[href='b.gif']")).locator("tr.face-sim td").all_inner_texts() == ["–"] * FRAMES

        error = page.locator("div.evidence", has_text="Video not scored")
        assert error.count() == 1
        assert error.inner_text().strip() == f"Video not scored (video_unreadable): {HOSTILE}"
        assert error.locator("b").count() == 0 and error.locator("table").count() == 0
        screenshot(page, tmp_path / "grid.png")


def test_reasons_tell_an_object_from_a_person_scored_without_a_face_backend():
    from pipelines.evaluation.report import missing_reasons

    found = [True] * FRAMES
    cat = scored("c.gif", "r.png", found=found, sims=[None] * FRAMES, subject_class="cat", face_status="not_scored")
    cat.update(frame_face_found=None, frame_face_sim=None)
    person = dict(cat, subject_class="woman")
    faceless = scored("v.gif", "r.png", found=[False] * FRAMES, sims=[None] * FRAMES, face_status="no_face_in_video")
    assert missing_reasons(cat) == ["Face Sim not computed: subject class 'cat' (faces are scored for persons only)."]
    assert missing_reasons(person) == ["Face Sim not computed: no face backend was configured."]
    assert missing_reasons(faceless) == ["No face in any frame: Face Sim not scored (the video is left out of the average)."]
