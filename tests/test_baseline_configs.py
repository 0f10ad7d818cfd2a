"""The baseline configs carry the author's settings, and the evaluation's FaceID generator takes its face as the author did."""

import json

import numpy as np
import pytest
from PIL import Image

from jobs.config import load_config
from pipelines.evaluation.config import EvaluationConfig, GenerationSettings, MethodConfig
from tiny_models import TINY_IP_ADAPTER_WEIGHT_NAMES, save_tiny_ip_adapter

# Written out from the author's baseline scripts (eval_ip_adapter_animatediff.py and
# eval_ip_adapter_face_animatediff.py in the first author's development fork).
SCRIPT_NEGATIVE_PROMPT = (
    "asymmetry, worst quality, low quality, illustration, 3d, 2d, painting, cartoons, sketch, multiple people, "
    "text on the screen, no people, unclear faces, awkward angles"
)
SCRIPT_FILES = {
    "ip-adapter": ("h94/IP-Adapter", "models", "ip-adapter_sd15.bin"),
    "ip-adapter-plus": ("h94/IP-Adapter", "models", "ip-adapter-plus_sd15.bin"),
    "ip-adapter-faceid": ("h94/IP-Adapter-FaceID", None, "ip-adapter-faceid-portrait_sd15.bin"),
}


@pytest.mark.parametrize("kind", list(SCRIPT_FILES))
def test_baseline_config_is_the_authors_script(kind):
    config = load_config(EvaluationConfig, f"jobs/configs/baselines/{kind}.yaml", ["benchmark=b.csv", "output_dir=out"])
    method, generation = config.method, config.generation
    assert (method.kind, method.name, method.preset) == (kind, kind, "paper")
    assert (method.weights, method.subfolder, method.weight_name) == SCRIPT_FILES[kind]
    assert method.motion_adapter == "guoyww/animatediff-motion-adapter-v1-5-2"
    assert method.reference_size == 640 and method.scale == 1.0 and method.generator_device == "cuda"
    assert (generation.dtype, generation.num_inference_steps, generation.guidance_scale) == ("float16", 30, 8.0)
    assert generation.negative_prompt == SCRIPT_NEGATIVE_PROMPT
    assert config.seeds == [42] and config.sets == ["celebrity", "non_celebrity"]
    # Scored exactly as VideoMaker's rows.
    paper = load_config(EvaluationConfig, "jobs/configs/eval_paper.yaml", ["benchmark=b.csv", "output_dir=out"])
    assert config.backends == paper.backends and config.face_protocol == paper.face_protocol
    assert (config.embedding_frames, config.dd_frames) == (paper.embedding_frames, paper.dd_frames)
    if kind == "ip-adapter-faceid":
        assert method.face_embedding_protocol == "paper" and method.face.options["det_size"] == 640


def test_baseline_only_method_keys_are_refused_elsewhere():
    with pytest.raises(ValueError, match="motion_adapter and method.reference_size apply to the IP-Adapter kinds"):
        MethodConfig(kind="videomaker", reference_size=640)
    with pytest.raises(ValueError, match="lora_weight_name and method.lora_scale apply to kind 'ip-adapter-faceid'"):
        MethodConfig(kind="ip-adapter", lora_scale=0.5)
    from pipelines.configs import validate

    with pytest.raises(ValueError, match="method.face_embedding_protocol: got 'bgr'"):
        validate(MethodConfig, {"kind": "ip-adapter", "face_embedding_protocol": "bgr"}, where="method")


def _face_photo() -> np.ndarray:
    """300x420 RGB: a small and a large warm-coloured block (the tiny detector's faces) on black."""
    image = np.zeros((300, 420, 3), np.uint8)
    image[20:60, 20:60] = (255, 235, 160)
    image[120:280, 200:380] = (250, 225, 170)
    return image


def test_faceid_generator_embeds_the_reference_as_the_authors_script(tmp_path, tiny_metric_models):
    from insightface.app import FaceAnalysis

    from pipelines.evaluation.methods import VideoGenerator

    weights = save_tiny_ip_adapter(tmp_path / "faceid", "ip-adapter-faceid")
    face = tiny_metric_models.face
    method = MethodConfig(
        kind="ip-adapter-faceid",
        preset="tiny",
        weights=str(weights),
        weight_name=TINY_IP_ADAPTER_WEIGHT_NAMES["ip-adapter-faceid"],
        reference_size=640,
        face=face,
        face_embedding_protocol="paper",
    )
    generator = VideoGenerator(method, GenerationSettings(num_inference_steps=2))
    reference = _face_photo()

    # The script's steps: load_image(...).resize((640, 640)), np.asarray (RGB), app.get, sorted by area, last.
    app = FaceAnalysis(name=face.options["model_dir"], allowed_modules=["detection", "recognition"], providers=["CPUExecutionProvider"])
    det = face.options["det_size"]
    app.prepare(ctx_id=-1, det_size=(det, det))
    image = np.asarray(Image.fromarray(reference).resize((640, 640)))
    faces = app.get(image)
    largest = sorted(faces, key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))[-1]
    (ours,) = generator._face_embeddings([reference])
    np.testing.assert_allclose(ours, largest.normed_embedding, atol=1e-5)

    generator.method = MethodConfig(**{**method.__dict__, "face_embedding_protocol": "corrected"})
    (corrected,) = generator._face_embeddings([reference])
    assert np.abs(corrected - largest.normed_embedding).max() > 1e-3  # BGR changes what ArcFace sees

    batch = generator([reference], ["A person wearing sunglasses."], [42], "low quality")
    assert batch.provenance["face_embedding_protocol"] == "corrected"
    assert batch.provenance["reference_size"] == 640 and batch.provenance["lora"]["layers"] == 32
    assert batch.provenance["face_embeddings_per_video"] == [1] and batch.provenance["generator_device"] == "cpu"
    json.dumps(batch.provenance)  # it goes into every video's sidecar


def test_models_stage_names_what_the_faceid_config_reads():
    from jobs.config import read_config_file
    from jobs.weight_sources import weights_named_by

    config = read_config_file("jobs/configs/baselines/ip-adapter-faceid.yaml")
    config["method"]["lora_weight_name"] = "ip-adapter-faceid_sd15_lora.safetensors"
    weights = {w.name: w for w in weights_named_by([config])}
    assert weights["baseline-motion-adapter"].source == "guoyww/animatediff-motion-adapter-v1-5-2"
    assert weights["ip-adapter-faceid"].allow_patterns == ("ip-adapter-faceid-portrait_sd15.bin", "ip-adapter-faceid_sd15_lora.safetensors")
