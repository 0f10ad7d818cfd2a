"""Face Sim's two protocols against independent re-implementations written here with straight insightface calls.

`paper` must equal the author's evaluation steps (FaceAnalysis given RGB arrays, the reference
stretched to 512x512 by PIL's default filter and its first detected face, each frame's largest face
by `sorted(...)[-1]`, torch cosine per frame, mean); `corrected` must equal the same with BGR input
and the largest face everywhere, and differ from `paper` where the two disagree. Models: the tiny
buffalo_l-shaped ONNX pack (bright cells are faces, a seeded random ArcFace), loaded by the real
FaceAnalysis router, at the author's det_size 640.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metrics.backends import BackendSpec, MetricBackends, load_backend
from metrics.backends.flow import OpenCVFlow
from metrics.records import ScoreRequest, score_requests
from metrics.suite import MetricSuite, VideoToScore, protocol_face_embedding

DET_SIZE = 640  # the author's FaceAnalysis.prepare(det_size=(640, 640))

# Warm, saturated colours: bright enough for the tiny detector, and their channel order changes ArcFace's input.
WHITE, PEACH, SKY, LIME = (255, 255, 255), (255, 215, 150), (170, 230, 250), (210, 255, 170)


@pytest.fixture(scope="module")
def face_pack(tmp_path_factory):
    from tiny_models import save_tiny_face_pack

    return save_tiny_face_pack(tmp_path_factory.mktemp("faces") / "buffalo_l", seed=3)


@pytest.fixture(scope="module")
def face_backend(face_pack):
    return load_backend("face", BackendSpec("insightface", {"model_dir": str(face_pack), "det_size": DET_SIZE}))


@pytest.fixture(scope="module")
def face_analysis(face_pack):
    """The author's model object: FaceAnalysis over the whole pack, prepared as their scripts did."""
    from insightface.app import FaceAnalysis

    app = FaceAnalysis(name=str(face_pack), providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(DET_SIZE, DET_SIZE))
    return Remembering(app)


class Remembering:
    """FaceAnalysis.get remembered per image (the tiny detector finds ~200 faces a frame, each embedded)."""

    def __init__(self, app):
        self.app, self.seen = app, {}

    def get(self, image):
        key = (image.tobytes(), image.shape)
        if key not in self.seen:
            self.seen[key] = self.app.get(image)
        return self.seen[key]


def canvas(height, width, *squares):
    """squares: (x0, y0, side, rgb) painted on black."""
    image = np.zeros((height, width, 3), np.uint8)
    for x0, y0, side, color in squares:
        image[y0 : y0 + side, x0 : x0 + side] = color
    return image


def author_face_sim(app, reference: np.ndarray, frames: list[np.ndarray]) -> float:
    """The author's cal_face_similarity after load_image(path).resize((512, 512)), step by step."""
    ref_image = np.array(Image.fromarray(reference).resize((512, 512)))  # PIL's default filter
    ref_emb = app.get(ref_image)[0].normed_embedding  # RGB straight in; the first face
    similarities = []
    for frame in frames:
        face_info = app.get(np.asarray(frame))
        if len(face_info) == 0:
            continue
        face_info = sorted(face_info, key=lambda x: (x["bbox"][2] - x["bbox"][0]) * (x["bbox"][3] - x["bbox"][1]))[-1]
        similarity = torch.nn.functional.cosine_similarity(torch.tensor(ref_emb), torch.tensor(face_info.normed_embedding), dim=-1)
        similarities.append(similarity.item())
    return float(np.mean(similarities))


def corrected_face_sim(app, reference: np.ndarray, frames: list[np.ndarray]) -> float:
    """BGR into insightface as it expects, the reference as it is, the largest face everywhere."""

    def largest(image):
        faces = app.get(np.ascontiguousarray(image[..., ::-1]))
        if not faces:
            return None
        areas = [(f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]) for f in faces]
        return faces[int(np.argmax(areas))].normed_embedding

    ref = largest(reference)
    found = [e for e in (largest(f) for f in frames) if e is not None]
    return float(np.mean([np.dot(ref, e) / (np.linalg.norm(ref) * np.linalg.norm(e)) for e in found]))


# A non-square reference (the 512x512 stretch matters) with two faces: a small white one the detector
# scores highest (so it comes first) and a larger, dimmer peach one.
REFERENCE = canvas(200, 300, (20, 20, 16, WHITE), (150, 60, 40, PEACH))
# Small faces keep the tiny detector's count low (each bright stride cell is a face, and FaceAnalysis.get embeds all).
FRAMES = [
    canvas(256, 256, (30, 40, 44, PEACH), (200, 200, 16, SKY)),
    canvas(256, 256, (10, 10, 20, SKY), (80, 70, 44, LIME)),
    canvas(256, 256),  # no face: skipped
    canvas(256, 256, (40, 30, 48, PEACH)),
]


def test_the_reference_puts_a_smaller_face_first(face_analysis):
    """The case where `paper` and `corrected` must part: FaceAnalysis.get's first face is not the largest."""
    faces = face_analysis.get(np.array(Image.fromarray(REFERENCE).resize((512, 512))))
    areas = [(f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]) for f in faces]
    assert len(faces) >= 2 and areas[0] < max(areas)


@pytest.fixture(scope="module")
def embedders(tiny_metric_models):
    return load_backend("clip", tiny_metric_models.clip), load_backend("dino", tiny_metric_models.dino)


def suite_of(face_backend, protocol, embedders):
    clip, dino = embedders
    return MetricSuite(MetricBackends(clip=clip, dino=dino, face=face_backend, flow=OpenCVFlow()), face_protocol=protocol)


def test_paper_protocol_equals_the_authors_steps(face_backend, face_analysis, embedders):
    suite = suite_of(face_backend, "paper", embedders)
    (scores,) = suite.score([VideoToScore(np.stack(FRAMES), "A person.", REFERENCE)])
    assert scores.face_protocol == "paper" and scores.face.status == "scored"
    assert scores.face.frames_with_face == 3 and scores.face.frames == 4
    assert scores.face.score == pytest.approx(author_face_sim(face_analysis, REFERENCE, FRAMES), abs=1e-6)


def test_corrected_protocol_equals_bgr_largest_face_and_differs_from_paper(face_backend, face_analysis, embedders):
    (paper,) = suite_of(face_backend, "paper", embedders).score([VideoToScore(np.stack(FRAMES), "A person.", REFERENCE)])
    (corrected,) = suite_of(face_backend, "corrected", embedders).score([VideoToScore(np.stack(FRAMES), "A person.", REFERENCE)])
    assert corrected.face_protocol == "corrected"
    assert corrected.face.score == pytest.approx(corrected_face_sim(face_analysis, REFERENCE, FRAMES), abs=1e-6)
    assert abs(corrected.face.score - paper.face.score) > 1e-3


def test_each_paper_step_matters(face_backend, face_analysis):
    """The reference's first face, its 512 stretch and the RGB input each change the embedding the author used."""
    paper = protocol_face_embedding(face_backend, REFERENCE, protocol="paper", reference=True)
    resized = np.array(Image.fromarray(REFERENCE).resize((512, 512)))
    np.testing.assert_allclose(paper, face_analysis.get(resized)[0].normed_embedding, atol=1e-6)
    corrected = protocol_face_embedding(face_backend, REFERENCE, protocol="corrected", reference=True)
    assert float(np.dot(paper, corrected)) < 0.999  # another face, another order of channels

    frame = FRAMES[0]
    rgb_in = protocol_face_embedding(face_backend, frame, protocol="paper", reference=False)
    bgr_in = protocol_face_embedding(face_backend, frame, protocol="corrected", reference=False)
    faces = face_analysis.get(frame)  # RGB, as the author passed it
    largest = sorted(faces, key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))[-1]
    np.testing.assert_allclose(rgb_in, largest.normed_embedding, atol=1e-6)
    assert float(np.dot(rgb_in, bgr_in)) < 0.999  # same face, channels swapped


def test_records_name_the_protocol_and_a_faceless_video_is_excluded(face_backend, face_analysis, embedders, tmp_path):
    from videomaker.export import write_lossless

    reference = tmp_path / "ref.png"
    Image.fromarray(REFERENCE).save(reference)
    frames = np.stack([FRAMES[i % len(FRAMES)] for i in range(16)])
    video = write_lossless(frames, tmp_path / "v.mkv")
    faceless = write_lossless(np.stack([FRAMES[2]] * 16), tmp_path / "none.mkv")
    requests = [
        ScoreRequest(str(video), "s", "A person.", str(reference)),
        ScoreRequest(str(faceless), "s", "A person.", str(reference)),
        ScoreRequest(str(tmp_path / "missing.mkv"), "s", "A person.", str(reference)),
    ]
    for protocol, expected in (
        ("paper", author_face_sim(face_analysis, REFERENCE, list(frames))),
        ("corrected", corrected_face_sim(face_analysis, REFERENCE, list(frames))),
    ):
        records = score_requests(suite_of(face_backend, protocol, embedders), requests)
        assert [r["face_protocol"] for r in records] == [protocol] * 3  # error records too
        assert records[0]["face_sim"] == pytest.approx(expected, abs=1e-6)
        assert records[0]["face_detection_rate"] == pytest.approx(12 / 16)
        assert records[1]["face_status"] == "no_face_in_video" and records[1]["face_sim"] is None


def test_negative_cosines_are_kept(face_backend):
    from metrics.definitions import face_similarity

    a = np.array([1.0, 0.0])
    result = face_similarity([-a, -a, None], a)
    assert result.score == pytest.approx(-1.0)


def test_an_unknown_protocol_is_refused_by_name():
    from pipelines.configs import validate
    from pipelines.evaluation.config import EvaluationConfig
    from pipelines.scoring.config import ScoringConfig

    with pytest.raises(ValueError, match="face_protocol.*'paper', 'corrected'"):
        MetricSuite(None, face_protocol="author")
    with pytest.raises(ValueError, match="face_protocol: got 'strict'"):
        validate(EvaluationConfig, {"benchmark": "b.csv", "output_dir": "o", "face_protocol": "strict"})
    with pytest.raises(ValueError, match="face_protocol: got 'strict'"):
        validate(ScoringConfig, {"manifest": "m.csv", "output_dir": "o", "face_protocol": "strict"})


def test_table_configs_use_the_paper_protocol():
    from jobs.config import load_config
    from pipelines.evaluation.config import EvaluationConfig
    from pipelines.scoring.config import ScoringConfig

    configs = Path(__file__).resolve().parents[1] / "jobs" / "configs"
    evaluation = load_config(EvaluationConfig, configs / "eval_paper.yaml", ["benchmark=b.csv", "output_dir=o"])
    scoring = load_config(ScoringConfig, configs / "score_paper.yaml", ["manifest=m.csv", "output_dir=o"])
    assert evaluation.face_protocol == scoring.face_protocol == "paper"
    assert EvaluationConfig(benchmark="b.csv", output_dir="o").face_protocol == "corrected"
