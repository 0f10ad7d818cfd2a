"""FaceSim-Cur (CurricularFace IR on aligned insightface crops) against plain recomputations written here.

The weights are a small IR network (fewer units and narrower stages than IR-101, the same key
layout) written key by key from the TFace layout in this file, saved as a torch file and read
through the backend's loader. The embedding is checked against a functional forward over that
state dict; the alignment against scikit-image's and OpenCV's similarity estimates and
insightface's own `norm_crop`; the per-video values against OpenS2V's rules coded here.
"""

import functools
import shutil
import warnings

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metrics.backends.curricularface import (
    ARCFACE_TEMPLATE_112,
    OPENS2V_CURRICULARFACE_WEIGHTS,
    CurricularFaceSim,
    IRBackbone,
    align_face,
    architecture_of,
    load_curricularface,
    mean_face_similarity,
    opens2v_cur_score,
    similarity_transform,
)
from metrics.backends.registry import BackendRegistry, BackendSpec, WeightSource
from tiny_models import save_tiny_face_pack

TINY_UNITS = (1, 2, 2, 1)
TINY_WIDTHS = (8, 16, 24, 32)
IR_101_UNITS = (3, 13, 30, 3)
IR_101_WIDTHS = (64, 128, 256, 512)


# --- the TFace IR layout, written out here -------------------------------------------------------------------


def ir_layout(units, widths, embedding=512, side=7, authors=False):
    """{key: shape} of an IR backbone: stem conv/BN/PReLU, basic units, BN-dropout-flatten-linear-BN1d head.

    Units are BN-conv-BN-PReLU-conv-BN in TFace's layout (OpenS2V's file), BN-conv-PReLU-conv-BN in
    the CurricularFace authors' (`authors=True`).
    """
    shapes = {}

    def bn(prefix, channels, affine=True):
        if affine:
            shapes[f"{prefix}.weight"] = (channels,)
            shapes[f"{prefix}.bias"] = (channels,)
        shapes[f"{prefix}.running_mean"] = (channels,)
        shapes[f"{prefix}.running_var"] = (channels,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["input_layer.0.weight"] = (widths[0], 3, 3, 3)
    bn("input_layer.1", widths[0])
    shapes["input_layer.2.weight"] = (widths[0],)
    unit, channels = 0, widths[0]
    for count, width in zip(units, widths):
        for _ in range(count):
            p = f"body.{unit}"
            if channels != width:
                shapes[f"{p}.shortcut_layer.0.weight"] = (width, channels, 1, 1)
                bn(f"{p}.shortcut_layer.1", width)
            bn(f"{p}.res_layer.0", channels)
            shapes[f"{p}.res_layer.1.weight"] = (width, channels, 3, 3)
            if not authors:
                bn(f"{p}.res_layer.2", width)
            k = 2 if authors else 3
            shapes[f"{p}.res_layer.{k}.weight"] = (width,)
            shapes[f"{p}.res_layer.{k + 1}.weight"] = (width, width, 3, 3)
            bn(f"{p}.res_layer.{k + 2}", width)
            unit, channels = unit + 1, width
    bn("output_layer.0", channels)
    shapes["output_layer.3.weight"] = (embedding, channels * side * side)
    shapes["output_layer.3.bias"] = (embedding,)
    bn("output_layer.4", embedding, affine=False)
    return shapes


def random_state(units=TINY_UNITS, widths=TINY_WIDTHS, seed=0, authors=False):
    """Random tensors in the layout, BN statistics included, scaled so activations stay near unit size."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in ir_layout(units, widths, authors=authors).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        elif key.endswith("running_mean") or key.endswith("bias"):
            state[key] = 0.1 * torch.randn(shape, generator=generator)
        elif len(shape) == 1:  # BN scale or PReLU slope
            state[key] = 0.75 + 0.5 * torch.rand(shape, generator=generator)
        else:
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=generator) / fan_in**0.5
    return state


def functional_embedding(state, crops, units=TINY_UNITS, authors=False):
    """The IR forward in float64 over the state dict with torch.nn.functional; unit (N, 512) vectors."""
    w = {k: v.double() for k, v in state.items() if v.is_floating_point()}

    def bn(x, prefix):
        return F.batch_norm(
            x, w[f"{prefix}.running_mean"], w[f"{prefix}.running_var"], w.get(f"{prefix}.weight"), w.get(f"{prefix}.bias"), eps=1e-5
        )

    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).double() * (2 / 255) - 1  # (x / 255 - 0.5) / 0.5
    x = F.prelu(bn(F.conv2d(x, w["input_layer.0.weight"], padding=1), "input_layer.1"), w["input_layer.2.weight"])
    strides = [2 if i == 0 else 1 for count in units for i in range(count)]
    for unit, stride in enumerate(strides):
        p = f"body.{unit}"
        r = F.conv2d(bn(x, f"{p}.res_layer.0"), w[f"{p}.res_layer.1.weight"], padding=1)
        k = 2 if authors else 3
        r = F.prelu(r if authors else bn(r, f"{p}.res_layer.2"), w[f"{p}.res_layer.{k}.weight"])
        r = bn(F.conv2d(r, w[f"{p}.res_layer.{k + 1}.weight"], stride=stride, padding=1), f"{p}.res_layer.{k + 2}")
        if f"{p}.shortcut_layer.0.weight" in w:
            s = bn(F.conv2d(x, w[f"{p}.shortcut_layer.0.weight"], stride=stride), f"{p}.shortcut_layer.1")
        else:
            s = x[:, :, ::stride, ::stride]
        x = r + s
    x = bn(x, "output_layer.0").flatten(1)
    x = F.batch_norm(
        F.linear(x, w["output_layer.3.weight"], w["output_layer.3.bias"]), w["output_layer.4.running_mean"], w["output_layer.4.running_var"]
    )
    return (x / x.norm(dim=1, keepdim=True)).numpy()


# --- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("curricularface")
    state = random_state()
    weights = root / "glint360k_curricular_face_r101_backbone.bin"
    torch.save(state, weights)
    pack = save_tiny_face_pack(root / "buffalo_l")
    return {"state": state, "weights": weights, "pack": pack}


@pytest.fixture(scope="module")
def backend(files):
    return CurricularFaceSim(str(files["weights"]), model_dir=str(files["pack"]))


def textured(seed, size=128):
    """A dark photo patch (never a face for the bright-cell detector) with a bright, noisy square: its one "face"."""
    from skimage import data

    rng = np.random.default_rng(seed)
    photo = data.astronaut()[seed * 7 : seed * 7 + size, seed * 5 : seed * 5 + size] // 3  # <= 85: below the detector's threshold
    image = np.ascontiguousarray(photo)
    y, x = 20 + 6 * (seed % 5), 24 + 5 * (seed % 7)
    image[y : y + 56, x : x + 56] = rng.integers(215, 256, (56, 56, 3))
    return image


def two_faces(seed):
    """Two bright squares of the same size: equal largest boxes, so OpenS2V's tie rule (the last found) decides."""
    image = textured(seed)
    image[20:76, 20:76] = dark(seed)[20:76, 20:76]
    rng = np.random.default_rng(seed + 100)
    for y, x in ((8, 8), (64, 64)):
        image[y : y + 56, x : x + 56] = rng.integers(215, 256, (56, 56, 3))
    return image


def dark(seed, size=128):
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[seed : seed + size, seed : seed + size] // 3)


@functools.cache
def face_analysis(pack):
    from insightface.app import FaceAnalysis

    app = FaceAnalysis(name=str(pack), root=str(pack.parent), allowed_modules=["detection"], providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=0, det_size=(320, 320))
    return app


def opens2v_face(pack, image_rgb):
    """OpenS2V's face: FaceAnalysis at det_size 320, boxes sorted by area, the last; None when none."""
    faces = face_analysis(pack).get(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not faces:
        return None
    return sorted(faces, key=lambda f: (f["bbox"][2] - f["bbox"][0]) * (f["bbox"][3] - f["bbox"][1]))[-1]


def opens2v_crop(image_rgb, kps):
    """insightface's norm_crop at 224 on the BGR image, back to RGB, resized to 112: the reference's input."""
    from insightface.utils import face_align

    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    return cv2.resize(cv2.cvtColor(face_align.norm_crop(bgr, landmark=kps, image_size=224), cv2.COLOR_BGR2RGB), (112, 112))


# --- the network and its loader -----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["tface", "curricularface"])
def test_ir101_has_the_released_layout_key_for_key(layout):
    with torch.device("meta"):
        model = IRBackbone(layout=layout)
    expected = ir_layout(IR_101_UNITS, IR_101_WIDTHS, authors=layout == "curricularface")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert len([k for k in expected if k.endswith("res_layer.1.weight")]) == 49  # 3 + 13 + 30 + 3 units
    assert architecture_of(model.state_dict()) == {
        "units": IR_101_UNITS,
        "widths": IR_101_WIDTHS,
        "embedding_size": 512,
        "input_size": 112,
        "layout": layout,
    }


def test_loader_reads_the_layer_counts_from_the_file_and_loads_strictly(files, tmp_path):
    model = load_curricularface(files["weights"])
    assert model.architecture == {"units": TINY_UNITS, "widths": TINY_WIDTHS, "embedding_size": 512, "input_size": 112, "layout": "tface"}
    for name, tensor in files["state"].items():
        torch.testing.assert_close(model.state_dict()[name], tensor)
    prefixed = tmp_path / "dataparallel.pth"
    torch.save({f"module.{k}": v for k, v in files["state"].items()}, prefixed)
    assert load_curricularface(prefixed).architecture["units"] == TINY_UNITS
    broken = dict(files["state"])
    del broken["body.1.res_layer.3.weight"]
    torch.save(broken, tmp_path / "missing.bin")
    with pytest.raises(ValueError, match="body.1.res_layer.3.weight"):
        load_curricularface(tmp_path / "missing.bin")


def test_loader_names_a_missing_file_and_a_foreign_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="hf download BestWishYsh/OpenS2V-Weight glint360k_curricular_face_r101_backbone.bin"):
        load_curricularface(tmp_path / "absent.bin")
    torch.save({"layers.0.weight": torch.zeros(2, 2)}, tmp_path / "aesthetic.pth")
    with pytest.raises(ValueError, match="is not an IR backbone"):
        load_curricularface(tmp_path / "aesthetic.pth")
    # an SE block appended to every unit (IR-SE) is neither layout
    se = dict(random_state())
    for unit in range(sum(TINY_UNITS)):
        se[f"body.{unit}.res_layer.6.fc1.weight"] = torch.zeros(1, 8, 1, 1)
    torch.save(se, tmp_path / "irse.pth")
    with pytest.raises(ValueError, match="another layout"):
        load_curricularface(tmp_path / "irse.pth")
    (tmp_path / "garbage.bin").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="could not be read as a torch state dict"):
        load_curricularface(tmp_path / "garbage.bin")


def test_embedding_equals_a_functional_forward_over_the_state_dict(backend, files):
    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(3)]
    crops.append(opens2v_crop(textured(2), ARCFACE_TEMPLATE_112 + 10))
    expected = functional_embedding(files["state"], crops)
    got = backend.embed_aligned(crops)
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert abs(float(got[0] @ got[1])) < 0.999  # distinct inputs give distinct embeddings: the check is not vacuous
    with pytest.raises(ValueError, match="112x112 aligned faces"):
        backend.embed_aligned([crops[0][:100]])


def test_the_authors_layout_loads_and_equals_its_functional_forward(files, tmp_path):
    state = random_state(seed=2, authors=True)
    torch.save(state, tmp_path / "CurricularFace_Backbone.pth")
    backend = CurricularFaceSim(str(tmp_path / "CurricularFace_Backbone.pth"), model_dir=str(files["pack"]))
    assert backend.describe()["architecture"]["layout"] == "curricularface"
    crops = [np.random.default_rng(3).integers(0, 256, (112, 112, 3), dtype=np.uint8), opens2v_crop(textured(5), ARCFACE_TEMPLATE_112)]
    np.testing.assert_allclose(backend.embed_aligned(crops), functional_embedding(state, crops, authors=True), atol=2e-5)


# --- alignment -----------------------------------------------------------------------------------------------


def landmarks(seed):
    rng = np.random.default_rng(seed)
    angle = rng.uniform(-0.6, 0.6)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (ARCFACE_TEMPLATE_112 - 56) @ rotation.T * rng.uniform(0.4, 1.5) + rng.uniform(50, 80, 2) + rng.normal(0, 2.5, (5, 2))


@pytest.mark.parametrize("seed", range(4))
def test_similarity_transform_matches_skimage_and_opencv(seed):
    from skimage.transform import SimilarityTransform

    source, target = landmarks(seed), ARCFACE_TEMPLATE_112 * 2
    got = similarity_transform(source, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer scikit-image prefers from_estimate; estimate is what insightface calls
        tform = SimilarityTransform()
        tform.estimate(source, target)
    np.testing.assert_allclose(got, tform.params[:2], atol=1e-9)
    # every point an inlier (huge threshold), then Levenberg-Marquardt: the least-squares similarity
    opencv, inliers = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC, ransacReprojThreshold=1e6, refineIters=100)
    assert inliers.all()
    np.testing.assert_allclose(got, opencv, atol=1e-3)
    assert abs(got[0, 0] - got[1, 1]) < 1e-12 and abs(got[0, 1] + got[1, 0]) < 1e-12  # rotation + uniform scale, no shear


@pytest.mark.parametrize("seed", range(3))
def test_aligned_crop_is_insightfaces_norm_crop_at_224_resized_to_112(seed):
    image = textured(seed)
    kps = landmarks(seed).astype(np.float32)
    got, expected = align_face(image, kps).astype(int), opens2v_crop(image, kps).astype(int)
    # the two matrices agree to ~1e-14, which can flip OpenCV's fixed-point bilinear rounding by one level
    assert np.abs(got - expected).max() <= 1 and (got != expected).mean() < 1e-3
    with pytest.raises(ValueError, match="5"):
        align_face(image, kps[:4])


# --- per-video values ----------------------------------------------------------------------------------------


def test_opens2v_rule_clamps_drops_zeros_and_reports_zero_for_nothing():
    sims = [0.5, None, -0.2, 0.0, 0.3, 0.5]
    kept = [s for s in sims if s is not None and max(0.0, s) != 0.0]
    assert opens2v_cur_score(sims) == pytest.approx(sum(kept) / len(kept)) == pytest.approx(1.3 / 3)
    assert opens2v_cur_score([None, None]) == 0.0
    assert opens2v_cur_score([-0.4, -0.1]) == 0.0  # every frame clamped away: OpenS2V's 0
    assert mean_face_similarity(sims) == pytest.approx((0.5 - 0.2 + 0.0 + 0.3 + 0.5) / 5)
    assert mean_face_similarity([None, None]) is None


def test_video_score_and_evidence_follow_opens2v_frame_by_frame(backend, files):
    reference = textured(11)
    video = np.stack([textured(i) if i % 3 == 0 else dark(i) for i in range(16)])
    video[9] = two_faces(9)
    result = backend.score_video(video, reference)
    faces = backend.detect(video[9])
    ties = [f for f in faces if f.area == max(g.area for g in faces)]
    assert len(ties) >= 2  # the tie rule below is exercised

    ref_face = opens2v_face(files["pack"], reference)
    ref_embedding = functional_embedding(files["state"], [opens2v_crop(reference, ref_face["kps"])])[0]
    indices = np.linspace(0, 15, 32, dtype=int)
    assert result.indices == tuple(int(i) for i in indices)
    per_sample, evidence = [], {frame.index: frame for frame in result.frames}
    assert sorted(evidence) == sorted(set(indices.tolist()))
    for index in indices:
        face = opens2v_face(files["pack"], video[index])
        frame = evidence[int(index)]
        assert frame.face_found == (face is not None) == (index % 3 == 0)
        assert frame.samples == int((indices == index).sum())
        if face is None:
            assert frame.similarity is None and frame.box is None
            per_sample.append(None)
            continue
        expected = float(functional_embedding(files["state"], [opens2v_crop(video[index], face["kps"])])[0] @ ref_embedding)
        np.testing.assert_allclose(frame.box, face["bbox"], atol=1e-3)
        assert frame.det_score == pytest.approx(float(face["det_score"]), abs=1e-5)
        assert frame.similarity == pytest.approx(expected, abs=1e-4)
        per_sample.append(expected)
    found = [s for s in per_sample if s is not None]
    assert result.score == pytest.approx(sum(found) / len(found), abs=1e-4)
    kept = [max(0.0, s) for s in found if max(0.0, s) != 0.0]
    assert result.opens2v_score == pytest.approx(sum(kept) / len(kept) if kept else 0.0, abs=1e-4)
    assert result.reason is None and result.frames_with_face == 6
    assert result.reference.face_found and not result.reference.padded


def test_a_video_without_faces_is_none_with_a_reason_and_opens2v_reports_zero(backend):
    reference = backend.reference(textured(4))
    result = backend.score_video(np.stack([dark(i) for i in range(8)]), reference)
    assert result.score is None and result.opens2v_score == 0.0
    assert "no face in any of the 8 sampled frames" in result.reason
    assert result.frames_with_face == 0 and all(not f.face_found and f.similarity is None for f in result.frames)
    assert sum(f.samples for f in result.frames) == 32


def test_a_reference_without_a_face_leaves_both_values_none(backend):
    result = backend.score_video(np.stack([textured(i) for i in range(4)]), dark(3))
    assert result.score is None and result.opens2v_score is None
    assert "no face found in the reference image (also after padding by 25%)" in result.reason
    assert "OpenS2V leaves such a video out" in result.reason
    assert not result.reference.face_found
    assert all(f.face_found and f.similarity is None for f in result.frames)  # the frames' faces are still on record


# --- loading through the hub cache, staging, registry, digest ----------------------------------------------------


def test_reads_the_backbone_from_the_hub_cache_offline(files, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    snapshot = tmp_path / "hub" / "models--BestWishYsh--OpenS2V-Weight" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    shutil.copy(files["weights"], snapshot / "glint360k_curricular_face_r101_backbone.bin")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    backend = CurricularFaceSim(OPENS2V_CURRICULARFACE_WEIGHTS, model_dir=str(files["pack"]))
    assert backend.describe()["weights"] == OPENS2V_CURRICULARFACE_WEIGHTS
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="hf download BestWishYsh/OpenS2V-Weight glint360k_curricular_face_r101_backbone.bin"):
        CurricularFaceSim(OPENS2V_CURRICULARFACE_WEIGHTS, model_dir=str(files["pack"]))


def test_weights_it_stages_share_face_sims_pack(files):
    assert CurricularFaceSim.weights({"model_dir": str(files["pack"])}) == [
        WeightSource("curricularface", "hf-file", OPENS2V_CURRICULARFACE_WEIGHTS),
        WeightSource("insightface", "local", str(files["pack"])),
    ]
    assert CurricularFaceSim.weights({"weights": str(files["weights"])})[0] == WeightSource(
        "curricularface", "local", str(files["weights"])
    )


def test_registry_builds_it_and_the_digest_follows_weights_and_protocol(backend, files, tmp_path):
    registry = BackendRegistry({"face_cur": {"curricularface": "metrics.backends.curricularface:CurricularFaceSim"}})
    built = registry.build(
        "face_cur", BackendSpec("curricularface", {"weights": str(files["weights"]), "model_dir": str(files["pack"])}), device="cpu"
    )
    assert built.digest == backend.digest == backend.describe()["digest"]
    assert backend.describe()["det_size"] == 320 and backend.describe()["num_frames"] == 32
    torch.save(random_state(seed=5), tmp_path / "other.bin")
    assert CurricularFaceSim(str(tmp_path / "other.bin"), model_dir=str(files["pack"])).digest != backend.digest
    assert CurricularFaceSim(str(files["weights"]), model_dir=str(files["pack"]), det_size=640).digest != backend.digest
    with pytest.raises(ValueError, match="takes no"):
        registry.build("face_cur", BackendSpec("curricularface", {"weights": str(files["weights"]), "detsize": 320}))
