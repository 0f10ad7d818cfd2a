"""The opt-in metric groups in the one-pass suite: the default computes exactly the paper's six; `vbench`
and `opens2v` add their metrics from the same pass, each equal to its definition applied on its own."""

import dataclasses

import numpy as np
import pytest

from metrics.aggregate import aggregate
from metrics.backends import BackendSpec, load_backends
from metrics.backends.random_init import save_random_aesthetic
from metrics.records import ScoreRequest, score_requests
from metrics.suite import MetricSuite, VideoToScore, check_groups, extra_metrics
from metrics.video_quality import i2v_subject, opens2v_motion_amplitude, temporal_flickering
from test_natural_score import ChatServer

EXTRA = ("temporal_flickering", "i2v_subject", "motion_amplitude", "aes_score", "natural_score")


def video(seed: int, frames: int = 16, size: int = 128) -> np.ndarray:
    """A photo crop drifting by a few pixels per frame (moving, not noise); 128 px, as RAFT needs."""
    from skimage import data

    photo = data.astronaut()
    return np.stack([photo[100 + 2 * k + seed : 100 + 2 * k + seed + size, 150 + 3 * k : 150 + 3 * k + size] for k in range(frames)])


@pytest.fixture(scope="module")
def aesthetic_options(tmp_path_factory):
    return save_random_aesthetic(tmp_path_factory.mktemp("aesthetic"))


def test_groups_are_checked_and_the_paper_six_always_come_first():
    assert check_groups(()) == ("paper",) and check_groups(["opens2v", "paper", "opens2v"]) == ("paper", "opens2v")
    with pytest.raises(ValueError, match=r"Unknown metric group\(s\) \['vbench2'\]; choose from \['paper', 'vbench', 'opens2v'\]"):
        check_groups(("vbench2",))
    # a metric whose backend is not configured is left out, not scored as zero
    assert extra_metrics(("opens2v",), None) == ("motion_amplitude",)


def test_the_default_records_hold_exactly_the_paper_six(tiny_metric_models, tmp_path, reference_image):
    from PIL import Image

    from videomaker.export import write_mp4

    write_mp4(video(0), tmp_path / "v.mp4", fps=8)
    Image.fromarray(reference_image).save(tmp_path / "ref.png")
    suite = MetricSuite(load_backends(tiny_metric_models))
    (record,) = score_requests(suite, [ScoreRequest(str(tmp_path / "v.mp4"), "s", "A person.", str(tmp_path / "ref.png"))])
    assert record["status"] == "ok" and record["metric_groups"] == "paper"
    assert all(record[m] is None for m in EXTRA)
    (row,) = aggregate([record])
    assert not set(EXTRA) & set(row)


def test_vbench_and_opens2v_metrics_come_from_the_same_pass(tiny_metric_models, aesthetic_options, reference_image):
    answers = iter(["4", "5", "3", "2", "2", "2"])  # three runs per video: means 4.0 and 2.0
    with ChatServer(lambda body, n: (200, next(answers))) as server:
        config = dataclasses.replace(
            tiny_metric_models,
            aesthetic=BackendSpec("laion-aesthetic", aesthetic_options),
            natural=BackendSpec("openai-chat", {"base_url": server.base_url, "model": "judge", "api_key_env": None, "retry_wait_s": 0.0}),
        )
        backends = load_backends(config)
        calls = []
        embed = backends.dino.embed_images
        backends.dino.embed_images = lambda images: calls.append(len(images)) or embed(images)
        suite = MetricSuite(backends, groups=("vbench", "opens2v"))
        videos = [VideoToScore(video(s), "A person.", reference_image, score_faces=False) for s in (0, 5)]
        scores = suite.score(videos)
    assert calls == [1, 32]  # the reference once, then the frames of both videos once: i2v_subject reused them
    reference = embed([reference_image])[0]
    for clip, scored in zip(videos, scores):
        assert scored.extra["temporal_flickering"] == pytest.approx(temporal_flickering(clip.frames))
        assert scored.extra["motion_amplitude"] == pytest.approx(opens2v_motion_amplitude(clip.frames))
        assert scored.extra["i2v_subject"] == pytest.approx(i2v_subject(embed(list(clip.frames)), reference), abs=1e-6)
        assert scored.extra["aes_score"] == pytest.approx(backends.aesthetic.score_video(clip.frames).score)
    assert [s.extra["natural_score"] for s in scores] == [4.0, 2.0]
    assert all(s.clip_t == p.clip_t for s, p in zip(scores, MetricSuite(backends).score(videos)))  # the six are unchanged


def test_a_failed_judge_leaves_the_metric_empty_and_says_why(tiny_metric_models, reference_image):
    with ChatServer(lambda body, n: (200, "looks natural to me")) as server:
        config = dataclasses.replace(
            tiny_metric_models, natural=BackendSpec("openai-chat", {"base_url": server.base_url, "model": "judge", "api_key_env": None})
        )
        (scored,) = MetricSuite(load_backends(config), groups=("opens2v",)).score(
            [VideoToScore(video(0), "A person.", reference_image, score_faces=False)]
        )
    assert scored.extra["natural_score"] is None and "aes_score" not in scored.extra
    assert list(scored.notes) == ["natural_score"]
    assert scored.notes["natural_score"].startswith("NaturalScore:") and "looks natural to me" in scored.notes["natural_score"]


def test_facesim_cur_joins_the_pass_for_people_only(tiny_metric_models, tmp_path, reference_image):
    import torch

    from test_curricularface import random_state
    from tiny_models import save_tiny_face_pack

    torch.save(random_state(), tmp_path / "glint360k_curricular_face_r101_backbone.bin")
    pack = save_tiny_face_pack(tmp_path / "buffalo_l")
    options = {"weights": str(tmp_path / "glint360k_curricular_face_r101_backbone.bin"), "model_dir": str(pack)}
    backends = load_backends(dataclasses.replace(tiny_metric_models, face_cur=BackendSpec("curricularface", options)))
    suite = MetricSuite(backends, groups=("opens2v",))
    person = VideoToScore(video(0), "A person.", reference_image)
    thing = VideoToScore(video(3), "A cup.", reference_image, score_faces=False)
    scored_person, scored_thing = suite.score([person, thing])
    alone = backends.face_cur.score_video(person.frames, reference_image)
    assert scored_person.extra["facesim_cur"] == alone.score and scored_person.extra["facesim_cur_opens2v"] == alone.opens2v_score
    assert "facesim_cur" not in scored_thing.extra and "motion_amplitude" in scored_thing.extra
    assert alone.score is not None and not scored_person.notes  # the tiny detector finds the astronaut's face
    (faceless,) = suite.score([VideoToScore(np.full((16, 128, 128, 3), 128, np.uint8), "A person.", reference_image)])
    assert faceless.extra["facesim_cur"] is None and faceless.extra["facesim_cur_opens2v"] == 0.0  # OpenS2V's zero, kept apart
    assert list(faceless.notes) == ["facesim_cur"] and faceless.notes["facesim_cur"].startswith("FaceSim-Cur:")


def test_facesim_cur_reads_its_own_reference_and_is_skipped_where_asked(tiny_metric_models, tmp_path, reference_image):
    import torch
    from PIL import Image

    from test_curricularface import random_state
    from tiny_models import save_tiny_face_pack
    from videomaker.export import write_mp4

    torch.save(random_state(), tmp_path / "cur.bin")
    options = {"weights": str(tmp_path / "cur.bin"), "model_dir": str(save_tiny_face_pack(tmp_path / "buffalo_l"))}
    backends = load_backends(dataclasses.replace(tiny_metric_models, face_cur=BackendSpec("curricularface", options)))
    suite = MetricSuite(backends, groups=("opens2v",))
    write_mp4(video(0), tmp_path / "v.mp4", fps=8)
    person = np.ascontiguousarray(reference_image[40:300, 120:380])  # the face, cropped: another image than the reference
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "cup.png")
    Image.fromarray(person).save(tmp_path / "person.png")
    Image.fromarray(reference_image).save(tmp_path / "ref.png")
    base = ScoreRequest(str(tmp_path / "v.mp4"), "s", "A person.", str(tmp_path / "cup.png"), subject_class="cup")
    own, skipped, default = score_requests(
        suite,
        [
            dataclasses.replace(base, face_cur_reference=str(tmp_path / "person.png")),  # an object first, the person given apart
            dataclasses.replace(base, reference=str(tmp_path / "ref.png"), subject_class="person", face_cur_reference="none"),
            dataclasses.replace(base, reference=str(tmp_path / "ref.png"), subject_class="person"),
        ],
    )
    from metrics.io import read_frames

    frames = read_frames(base.video).frames
    assert backends.face_cur.score_video(frames, person).score is not None  # the tiny detector finds the cropped face
    assert own["facesim_cur"] == pytest.approx(backends.face_cur.score_video(frames, person).score)
    assert own["face_status"] == "not_scored" and own["face_cur_reference"] == str(tmp_path / "person.png")
    assert skipped["facesim_cur"] is None and skipped["facesim_cur_opens2v"] is None and skipped["face_status"] == "scored"
    assert default["facesim_cur"] == pytest.approx(backends.face_cur.score_video(frames, reference_image).score)
    assert own["facesim_cur"] != default["facesim_cur"]
    # A FaceSim-Cur image that is gone costs FaceSim-Cur alone, with its reason; the other metrics still count.
    (missing,) = score_requests(suite, [dataclasses.replace(base, face_cur_reference=str(tmp_path / "gone.png"))])
    assert missing["status"] == "ok" and missing["clip_t"] is not None and missing["facesim_cur"] is None
    assert missing["message"].startswith("FaceSim-Cur:") and "gone.png" in missing["message"]


def test_gme_score_joins_the_pass_and_equals_the_backend_alone(tiny_metric_models, tmp_path, reference_image):
    from metrics.backends.random_init import save_random_gme
    from metrics.score_cache import ScoreCache

    config = dataclasses.replace(tiny_metric_models, gme=BackendSpec("gme-qwen2-vl", {"model": save_random_gme(tmp_path / "gme")}))
    backends = load_backends(config)
    suite = MetricSuite(backends, groups=("opens2v",))
    clips = [VideoToScore(video(s), p, reference_image, score_faces=False) for s, p in ((0, "A cup."), (4, "A dog runs."))]
    scores = suite.score(clips)
    for clip, scored in zip(clips, scores):
        assert scored.extra["gme_score"] == pytest.approx(backends.gme.score_video(clip.frames, clip.prompt).score, abs=1e-6)
    assert scores[0].extra["gme_score"] != scores[1].extra["gme_score"]
    # As every unit, it is cached by its inputs (frames, prompt) and GME's description.
    cache = ScoreCache()
    keys = cache.keys(suite, clips[0])
    assert "gme_score" in keys and keys["gme_score"] != cache.keys(suite, dataclasses.replace(clips[0], prompt="A mug."))["gme_score"]
