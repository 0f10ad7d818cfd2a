"""The aesthetic backend through its real loaders on tiny random weights, against a plain recomputation here."""

import shutil

import numpy as np
import pytest
import torch

from metrics.backends.aesthetic import EXPECTED_KEYS, OPENS2V_AESTHETIC_WEIGHTS, LAIONAestheticScorer
from metrics.backends.random_init import save_random_aesthetic, save_random_open_clip
from metrics.backends.registry import WeightSource


@pytest.fixture(scope="module")
def options(tmp_path_factory):
    return save_random_aesthetic(tmp_path_factory.mktemp("aesthetic"), seed=3)


@pytest.fixture(scope="module")
def scorer(options):
    return LAIONAestheticScorer(**options)


def photos(count, size=96):
    from skimage import data

    photo = data.astronaut()
    return [np.ascontiguousarray(photo[17 * i : 17 * i + size, 23 * i : 23 * i + size + 20]) for i in range(count)]


def plain_scores(options, images):
    """open_clip's own model and transform, then the MLP as five matrix products on the unit embeddings."""
    import open_clip
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(options["clip_model"])
    model.eval()
    with torch.no_grad():
        embeddings = model.encode_image(torch.stack([preprocess(Image.fromarray(image)) for image in images])).double().numpy()
    state = torch.load(options["weights"], weights_only=True)
    hidden = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    for index in (0, 2, 4, 6, 7):  # dropout is off in evaluation and there is no activation between the layers
        hidden = hidden @ state[f"layers.{index}.weight"].double().numpy().T + state[f"layers.{index}.bias"].double().numpy()
    return hidden[:, 0]


def test_image_scores_equal_a_plain_mlp_forward(scorer, options):
    images = photos(5)
    expected = plain_scores(options, images)
    got = scorer.score_images(images)
    assert got.shape == (5,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert np.ptp(expected) > 1e-3  # the images score differently, so a mix-up of rows would show


def test_video_score_is_the_mean_over_opens2v_s_32_sampled_frames(scorer, options):
    frames = np.stack([np.asarray(_resized(image)) for image in photos(16)])
    per_frame = plain_scores(options, list(frames))
    sampled = np.linspace(0, 15, 32, dtype=int)  # get_aesscore.py's sampling of a 16-frame video
    result = scorer.score_video(frames)
    assert result.score == pytest.approx(per_frame[sampled].mean(), abs=1e-4)
    assert result.score != pytest.approx(per_frame.mean(), abs=1e-6)  # repeats weigh frame 0 three times, frame 15 once
    assert list(result.indices) == sampled.tolist()
    np.testing.assert_allclose(np.array(result.frame_scores, dtype=float), per_frame, atol=1e-4)


def test_fewer_sampled_frames_leave_the_others_unscored(options):
    scorer = LAIONAestheticScorer(**options, num_frames=4)
    frames = np.stack([np.asarray(_resized(image)) for image in photos(10)])
    result = scorer.score_video(frames)
    assert result.indices == (0, 3, 6, 9)
    assert [s is not None for s in result.frame_scores] == [i in (0, 3, 6, 9) for i in range(10)]


def test_describes_both_models_and_a_digest_that_follows_the_mlp_weights(scorer, options, tmp_path):
    described = scorer.describe()
    assert described["clip"]["activation"] == "QuickGELU" and described["digest"] == scorer.digest
    assert scorer.digest.startswith("sha256:")
    state = torch.load(options["weights"], weights_only=True)
    state["layers.7.bias"] += 1.0
    torch.save(state, tmp_path / "other.pth")
    other = LAIONAestheticScorer(str(tmp_path / "other.pth"), clip_model=options["clip_model"])
    assert other.digest != scorer.digest
    images = photos(2)
    np.testing.assert_allclose(other.score_images(images), scorer.score_images(images) + 1.0, atol=1e-5)


def test_reads_the_mlp_from_the_hub_cache_offline(options, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    snapshot = tmp_path / "hub" / "models--BestWishYsh--OpenS2V-Weight" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    shutil.copy(options["weights"], snapshot / "aesthetic-model.pth")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    scorer = LAIONAestheticScorer(OPENS2V_AESTHETIC_WEIGHTS, clip_model=options["clip_model"])
    assert scorer.describe()["weights"] == OPENS2V_AESTHETIC_WEIGHTS
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="hf download BestWishYsh/OpenS2V-Weight aesthetic-model.pth"):
        LAIONAestheticScorer(OPENS2V_AESTHETIC_WEIGHTS, clip_model=options["clip_model"])


def test_weights_it_stages():
    assert LAIONAestheticScorer.weights({}) == [
        WeightSource("aesthetic", "hf-file", OPENS2V_AESTHETIC_WEIGHTS),
        WeightSource("aesthetic-clip", "open_clip", "ViT-L-14:openai"),
    ]


def test_a_file_that_is_not_the_mlp_is_refused_by_name(options, tmp_path):
    state = torch.load(options["weights"], weights_only=True)
    state["head.weight"] = state.pop("layers.7.weight")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(ValueError, match=r"missing keys \['layers.7.weight'\], unexpected keys \['head.weight'\]"):
        LAIONAestheticScorer(str(tmp_path / "renamed.pth"), clip_model=options["clip_model"])
    (tmp_path / "truncated.pth").write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match="could not be read as a torch state dict"):
        LAIONAestheticScorer(str(tmp_path / "truncated.pth"), clip_model=options["clip_model"])
    with pytest.raises(FileNotFoundError, match="no such file"):
        LAIONAestheticScorer(str(tmp_path / "absent.pth"), clip_model=options["clip_model"])
    assert set(EXPECTED_KEYS) == set(torch.load(options["weights"], weights_only=True))


def test_a_clip_of_another_width_is_refused(options, tmp_path):
    narrow = save_random_open_clip(tmp_path / "clip32")  # 32-dim embeddings
    with pytest.raises(ValueError, match="expects 768-dim embeddings but `clip_model`.* gives 32"):
        LAIONAestheticScorer(options["weights"], clip_model=narrow)


def test_staged_options_point_the_clip_at_its_staged_copy(tmp_path):
    options = LAIONAestheticScorer.staged_options({}, {"ViT-L-14:openai": str(tmp_path)})
    assert options["clip_model"] == f"local-dir:{tmp_path}" and "clip_pretrained" not in options
    assert options["quick_gelu"] is True  # the staged copy alone no longer says its OpenAI weights need QuickGELU


def _resized(image, size=64):
    from PIL import Image

    return Image.fromarray(image).resize((size, size))


def test_a_registry_builds_it_from_config_options(options):
    from metrics.backends.registry import BackendRegistry, BackendSpec

    registry = BackendRegistry({"aesthetic": {"laion-aesthetic": "metrics.backends.aesthetic:LAIONAestheticScorer"}})
    built = registry.build("aesthetic", BackendSpec("laion-aesthetic", dict(options)), device="cpu")
    assert isinstance(built, LAIONAestheticScorer) and built.num_frames == 32
    assert registry.weights("aesthetic", BackendSpec("laion-aesthetic", dict(options)))[0] == WeightSource(
        "aesthetic", "local", options["weights"]
    )
    with pytest.raises(ValueError, match="takes no \\['frames'\\]"):
        registry.check("aesthetic", BackendSpec("laion-aesthetic", {"frames": 16}))
