"""SHP model backends: weight-free ones on real pixels, model ones through their real loaders on tiny models."""

import hashlib
import re
import warnings

import cv2
import numpy as np
import pytest
from skimage import data

import tiny_models
from pipelines.preprocess.backends import (
    CascadeFaceDetector,
    CenterGrabCutObjectDetector,
    GrabCutSegmenter,
    GroundingDinoDetector,
    InsightFaceDetector,
    SAMSegmenter,
    make_face_detector,
    make_object_detector,
    make_segmenter,
)
from pipelines.preprocess.backends.base import Box
from pipelines.preprocess.backends.cascade import merge_overlapping
from pipelines.preprocess.backends.grounding_dino import grounding_prompt

# Hand-labelled face (brows to chin, ear to ear) of scikit-image's astronaut, in pixels.
ASTRONAUT_FACE = Box(180, 75, 270, 170)


def iou(a: Box, b: Box) -> float:
    inter = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    return inter / (a.width * a.height + b.width * b.height - inter)


def sha256_prefix(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def head_scene(seed: int = 0, size: int = 320):
    """The astronaut's head cut out as an ellipse and pasted on noisy blue/green stripes; (image, true mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    stripes = ((xx + yy) // 12 % 2)[..., None] == 1
    background = np.where(stripes, [40, 90, 200], [30, 170, 80]) + rng.normal(0, 20, (size, size, 3))
    image = np.clip(background, 0, 255).astype(np.uint8)
    mask = ((xx - 160) / 72) ** 2 + ((yy - 170) / 88) ** 2 <= 1
    ys, xs = np.nonzero(mask)
    image[ys, xs] = data.astronaut()[ys - 70, xs + 68]  # source ellipse centred on her head at (228, 100)
    return image, mask


def bounding_box(mask: np.ndarray, enlarge: float = 0.0) -> Box:
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    dx, dy = enlarge * (x1 - x0), enlarge * (y1 - y0)
    height, width = mask.shape
    return Box(max(0, x0 - dx), max(0, y0 - dy), min(width, x1 + dx), min(height, y1 + dy))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


# --- weight-free backends on real pixels -------------------------------------------------------


def test_cascade_finds_the_astronauts_face_once(reference_image):
    faces = CascadeFaceDetector().detect(reference_image)
    assert len(faces) == 1
    assert iou(faces[0], ASTRONAUT_FACE) > 0.6

    [large] = CascadeFaceDetector().detect(cv2.resize(reference_image, (1024, 1024)))  # scanned at 512 px
    assert iou(large, Box(*(2 * v for v in ASTRONAUT_FACE.as_list()))) > 0.6


def test_cascade_finds_the_pasted_face_and_none_in_a_faceless_photo():
    image, mask = head_scene()
    [face] = CascadeFaceDetector().detect(image)
    head = bounding_box(mask)
    assert head.x0 <= face.x0 < face.x1 <= head.x1 and head.y0 <= face.y0 < face.y1 <= head.y1
    assert CascadeFaceDetector().detect(data.coffee()) == []


def test_overlapping_detections_merge_into_the_largest():
    big, inner, apart = Box(0, 0, 100, 100), Box(10, 10, 80, 80), Box(150, 0, 190, 40)
    shifted = Box(60, 60, 150, 150)  # overlaps `big` by less than half of its own area
    assert merge_overlapping([inner, apart, big, shifted]) == [big, shifted, apart]


def test_grabcut_segments_the_pasted_head():
    image, mask = head_scene()
    box = bounding_box(mask, enlarge=0.1)
    as_box = np.zeros_like(mask)
    as_box[round(box.y0) : round(box.y1), round(box.x0) : round(box.x1)] = True
    assert mask_iou(as_box, mask) < 0.7  # returning the prompt box would fail the bar below

    segmenter = GrabCutSegmenter()
    found = segmenter.segment(image, box)
    assert found.dtype == bool and found.shape == mask.shape
    assert mask_iou(found, mask) >= 0.8
    assert np.array_equal(segmenter.segment(image, box), found)  # seeded


def test_center_grabcut_boxes_the_pasted_subject_whatever_the_word():
    image, mask = head_scene()
    detector = CenterGrabCutObjectDetector()
    [box] = detector.detect(image, "person")
    assert iou(box, bounding_box(mask)) >= 0.8
    assert detector.detect(image, "dog") == [box]  # the class word is ignored


def test_weight_free_versions_name_their_library():
    import skimage

    assert CascadeFaceDetector().version == f"scikit-image=={skimage.__version__};opencv=={cv2.__version__}"
    assert GrabCutSegmenter().version == CenterGrabCutObjectDetector().version == f"opencv=={cv2.__version__}"


# --- contracts: every bad input is refused, naming the argument ---------------------------------

BAD_IMAGES = {
    "float": np.zeros((32, 32, 3), np.float32),
    "gray": np.zeros((32, 32), np.uint8),
    "rgba": np.zeros((32, 32, 4), np.uint8),
    "list": [[0, 0, 0]],
}
BAD_BOXES = {
    "outside": Box(10, 10, 40, 20),
    "negative": Box(-1, 0, 10, 10),
    "inverted": Box(20, 20, 10, 10),
    "empty": Box(5, 5, 5, 10),
    "nan": Box(0, 0, float("nan"), 10),
    "not a Box": (0, 0, 10, 10),
}
IMAGE = np.zeros((24, 32, 3), np.uint8)


def call(backend, image=IMAGE, box=Box(4, 4, 20, 20), class_name="dog"):
    if hasattr(backend, "segment"):
        return backend.segment(image, box)
    if backend.name in ("cascade", "insightface"):
        return backend.detect(image)
    return backend.detect(image, class_name)


WEIGHT_FREE = [CascadeFaceDetector, CenterGrabCutObjectDetector, GrabCutSegmenter]


@pytest.mark.parametrize("backend", WEIGHT_FREE, ids=lambda c: c.name)
@pytest.mark.parametrize("image", BAD_IMAGES.values(), ids=BAD_IMAGES.keys())
def test_bad_images_are_refused(backend, image):
    with pytest.raises(ValueError, match="`image` must be a uint8 RGB array"):
        call(backend(), image=image)


@pytest.mark.parametrize("box", BAD_BOXES.values(), ids=BAD_BOXES.keys())
def test_bad_boxes_are_refused(box):
    with pytest.raises(ValueError, match="`box` must be"):
        GrabCutSegmenter().segment(IMAGE, box)


@pytest.mark.parametrize("class_name", ["", "  ", None])
def test_empty_class_names_are_refused(class_name):
    with pytest.raises(ValueError, match="`class_name` must be a non-empty word"):
        CenterGrabCutObjectDetector().detect(IMAGE, class_name)


@pytest.mark.parametrize(
    ("backend", "options", "argument"),
    [
        (CascadeFaceDetector, {"min_face_fraction": 0}, "min_face_fraction"),
        (CascadeFaceDetector, {"scale_factor": 1.0}, "scale_factor"),
        (CascadeFaceDetector, {"min_neighbors": 0}, "min_neighbors"),
        (GrabCutSegmenter, {"iterations": 0}, "iterations"),
        (CenterGrabCutObjectDetector, {"margin": 0.5}, "margin"),
    ],
)
def test_bad_options_are_refused(backend, options, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        backend(**options)


def test_grabcut_refuses_a_box_too_small_to_model():
    with pytest.raises(ValueError, match="at least 2x2 pixels"):
        GrabCutSegmenter().segment(IMAGE, Box(0, 0, 1, 1))


def test_a_full_frame_box_still_leaves_grabcut_a_background():
    image, _ = head_scene()
    assert GrabCutSegmenter(iterations=1).segment(image, Box(0, 0, 320, 320)).shape == (320, 320)


# --- InsightFace SCRFD through insightface's loader, on a tiny ONNX model with a known answer ----


@pytest.fixture(scope="module")
def scrfd_dir(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("buffalo_tiny")
    tiny_models.save_tiny_scrfd(model_dir)
    return model_dir


def test_insightface_detects_the_bright_cells_of_the_tiny_model(scrfd_dir):
    detector = InsightFaceDetector(scrfd_dir, det_size=64)
    assert detector.version == f"sha256:{sha256_prefix(scrfd_dir / 'det_10g.onnx')}"
    image = np.zeros((96, 128, 3), np.uint8)
    image[32:64, 48:96] = 255  # letterboxed at scale 0.5 into 64x64: whole stride cells
    faces = detector.detect(image)
    assert faces and all(f.score > 0.99 for f in faces)
    covered = np.zeros(image.shape[:2], bool)
    for face in faces:
        covered[int(face.y0) : int(face.y1), int(face.x0) : int(face.x1)] = True
    assert np.array_equal(covered, image[..., 0] == 255)  # boxes tile the white cells, mapped back to the frame
    areas = [f.width * f.height for f in faces]
    assert areas == sorted(areas, reverse=True)
    assert InsightFaceDetector(scrfd_dir, det_size=64, det_thresh=1.0).detect(image) == []


def test_insightface_explains_how_to_stage_buffalo_l(tmp_path, scrfd_dir):
    with pytest.raises(FileNotFoundError, match=r"`model_dir` .*missing.* not a directory.*buffalo_l"):
        InsightFaceDetector(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"exactly one det_\*\.onnx.*found \[\].*buffalo_l"):
        InsightFaceDetector(tmp_path)
    with pytest.raises(ValueError, match="`det_size` must be a positive multiple of 32"):
        InsightFaceDetector(scrfd_dir, det_size=100)


def test_insightface_refuses_an_onnx_it_does_not_route_to_scrfd(tmp_path):
    import torch

    recognizer = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 16, 16), torch.nn.Flatten())  # 112x112 in, one output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated
        torch.onnx.export(recognizer, (torch.zeros(1, 3, 112, 112),), str(tmp_path / "det_1.onnx"), dynamo=False)
    with pytest.raises(ValueError, match="not an SCRFD detection model .*ArcFaceONNX"):
        InsightFaceDetector(tmp_path)


def test_insightface_refuses_bad_images(scrfd_dir):
    with pytest.raises(ValueError, match="`image` must be a uint8 RGB array"):
        InsightFaceDetector(scrfd_dir, det_size=64).detect(BAD_IMAGES["gray"])


# --- Grounding DINO through the transformers Auto* loaders, on a tiny random model --------------


@pytest.fixture(scope="module")
def grounding_dir(tmp_path_factory):
    return tiny_models.save_tiny_grounding_dino(tmp_path_factory.mktemp("grounding_tiny"))


def test_grounding_dino_runs_end_to_end_and_applies_its_threshold(grounding_dir, reference_image):
    detector = GroundingDinoDetector(grounding_dir, box_threshold=0.0, text_threshold=0.0)
    assert detector.version == f"sha256:{sha256_prefix(grounding_dir / 'model.safetensors')}"
    boxes = detector.detect(reference_image, "Cat")
    assert len(boxes) == tiny_models.GROUNDING_QUERIES  # every query passes a zero threshold
    scores = [b.score for b in boxes]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= b.x0 < b.x1 <= 512 and 0 <= b.y0 < b.y1 <= 512 for b in boxes)
    assert GroundingDinoDetector(grounding_dir, box_threshold=1.0).detect(reference_image, "cat") == []
    with pytest.raises(ValueError, match="`class_name` must be a non-empty word"):
        detector.detect(reference_image, " ")


def test_grounding_prompt_format():
    assert grounding_prompt(" Dog ") == "dog."
    assert grounding_prompt("teddy bear.") == "teddy bear."


def test_grounding_dino_explains_missing_models(tmp_path):
    with pytest.raises(FileNotFoundError, match="`model_id_or_dir` .* is not a directory"):
        GroundingDinoDetector(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="nor in the Hugging Face cache.*hf download videomaker-tests/absent"):
        GroundingDinoDetector("videomaker-tests/absent")  # HF_HUB_OFFLINE=1 (conftest)
    with pytest.raises(FileNotFoundError, match=r"no \*\.safetensors or \*\.bin weights"):
        GroundingDinoDetector(tmp_path)


# --- SAM through sam_model_registry + SamPredictor, on a tiny SAM --------------------------------


@pytest.fixture(scope="module")
def sam_checkpoint(tmp_path_factory):
    return tiny_models.save_tiny_sam(tmp_path_factory.mktemp("sam_tiny") / "sam_tiny.pth")


@pytest.fixture
def tiny_sam_registered(monkeypatch):
    import segment_anything

    monkeypatch.setitem(segment_anything.sam_model_registry, "tiny", tiny_models.build_tiny_sam)


def test_sam_matches_segment_anythings_predictor(sam_checkpoint, tiny_sam_registered, reference_image):
    import torch
    from segment_anything import SamPredictor

    segmenter = SAMSegmenter(sam_checkpoint, model_type="tiny")
    assert segmenter.version == f"sha256:{sha256_prefix(sam_checkpoint)}"
    mask = segmenter.segment(reference_image, ASTRONAUT_FACE)
    assert mask.dtype == bool and mask.shape == reference_image.shape[:2]

    reference = tiny_models.build_tiny_sam()
    reference.load_state_dict(torch.load(sam_checkpoint, weights_only=True))
    predictor = SamPredictor(reference)
    predictor.set_image(reference_image)
    expected, _, _ = predictor.predict(box=np.array(ASTRONAUT_FACE.as_list()), multimask_output=False)
    assert np.array_equal(mask, expected[0])
    with pytest.raises(ValueError, match="`box` must be"):
        segmenter.segment(reference_image, Box(400, 400, 600, 600))


def test_sam_explains_missing_or_mismatched_checkpoints(tmp_path, sam_checkpoint, tiny_sam_registered):
    import torch

    with pytest.raises(FileNotFoundError, match="`checkpoint_path` .*missing.pth.* not a file.*sam_vit_b"):
        SAMSegmenter(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"`model_type` 'vit_x' .*available: \['default', 'tiny', 'vit_b'"):
        SAMSegmenter(sam_checkpoint, model_type="vit_x")
    torch.save({"unrelated": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not fit SAM `model_type` 'tiny'"):
        SAMSegmenter(tmp_path / "other.pth", model_type="tiny")


# --- registry + factory ----------------------------------------------------------------------


def test_factories_build_every_backend_by_name(scrfd_dir, grounding_dir, sam_checkpoint, tiny_sam_registered):
    assert isinstance(make_face_detector("cascade"), CascadeFaceDetector)
    assert isinstance(make_face_detector("insightface", model_dir=scrfd_dir, det_size=64), InsightFaceDetector)
    assert isinstance(make_object_detector("center-grabcut", margin=0.2), CenterGrabCutObjectDetector)
    assert isinstance(make_object_detector("grounding-dino", model_id_or_dir=grounding_dir), GroundingDinoDetector)
    assert make_segmenter("grabcut", iterations=2).iterations == 2
    assert isinstance(make_segmenter("sam", checkpoint_path=sam_checkpoint, model_type="tiny"), SAMSegmenter)


@pytest.mark.parametrize(
    ("factory", "available"),
    [
        (make_face_detector, "['cascade', 'insightface']"),
        (make_object_detector, "['center-grabcut', 'grounding-dino']"),
        (make_segmenter, "['grabcut', 'sam']"),
    ],
)
def test_factories_list_the_available_names(factory, available):
    with pytest.raises(ValueError, match=re.escape(f"'nope'. Available: {available}.")):
        factory("nope")
