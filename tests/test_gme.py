"""The GME backend (OpenS2V's GmeScore) through its real loaders on a tiny random Qwen2-VL, against a plain
recomputation here: the chat text built by hand, the tokenizer and the Pillow image processor called
directly, the model's own forward with sequential positions, the last token's final hidden state."""

import shutil

import numpy as np
import pytest
import torch

from metrics.backends.gme import GME_HUB_FILES, GME_MODEL, GmeScorer
from metrics.backends.random_init import save_random_gme
from metrics.backends.registry import BackendRegistry, BackendSpec, WeightSource

QUERY = "Find an image that matches the given text."
CORPUS = "You are a helpful assistant."


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_random_gme(tmp_path_factory.mktemp("gme"), seed=0)


@pytest.fixture(scope="module")
def scorer(model_dir):
    return GmeScorer(model_dir)


@pytest.fixture(scope="module")
def plain(model_dir):
    return PlainGme(model_dir)


class PlainGme:
    """GME written out: one chat turn per input, one input per forward (no padding), positions 0..L-1."""

    def __init__(self, directory, min_tokens=256, max_tokens=1280):
        from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        self.model = Qwen2VLForConditionalGeneration.from_pretrained(directory, dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        self.images = Qwen2VLImageProcessorPil(min_pixels=min_tokens * 784, max_pixels=max_tokens * 784)
        self.end = self.tokenizer.convert_tokens_to_ids("<|endoftext|>")

    @staticmethod
    def chat(instruction, content):
        return (
            "<|im_start|>system\n"
            + instruction
            + "<|im_end|>\n<|im_start|>user\n"
            + content
            + "<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"
        )

    @staticmethod
    def pre_resize(image):
        """qwen_vl_utils' fetch_image for the sizes used here: each side to the nearest multiple of 28, bicubic."""
        from PIL import Image

        height, width = image.shape[:2]
        size = (max(28, round(width / 28) * 28), max(28, round(height / 28) * 28))
        return Image.fromarray(image).resize(size, Image.Resampling.BICUBIC)

    def text(self, text, instruction=QUERY):
        ids = self.tokenizer(self.chat(instruction, text), return_tensors="pt")["input_ids"]
        return self._last_token(ids)

    def image(self, image, pre_resize=True, mrope=False):
        from PIL import Image

        picture = self.pre_resize(image) if pre_resize else Image.fromarray(image)
        pixels = self.images(images=[picture], return_tensors="pt")
        grid = pixels["image_grid_thw"]
        pads = "<|image_pad|>" * int(grid.prod() // 4)
        ids = self.tokenizer(self.chat(CORPUS, "<|vision_start|>" + pads + "<|vision_end|>"), return_tensors="pt")["input_ids"]
        return self._last_token(ids, pixel_values=pixels["pixel_values"], image_grid_thw=grid, mrope=mrope), tuple(grid[0].tolist())

    def _last_token(self, ids, mrope=False, **images):
        assert ids[0, -1] == self.end  # GME's embedding is the trailing <|endoftext|>'s
        extra = {}
        if mrope:  # Qwen2-VL's own 3-D positions, which GME does not use
            extra["mm_token_type_ids"] = (ids == self.model.config.image_token_id).long()
        else:
            extra["position_ids"] = torch.arange(ids.shape[1]).view(1, 1, -1).expand(3, 1, -1)
        with torch.no_grad():
            out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True, **images, **extra)
        last = out.hidden_states[-1][0, -1].double().numpy()
        return last / np.linalg.norm(last)


def photos(count, height=64, width=80):
    from skimage import data

    photo = data.astronaut()
    return [np.ascontiguousarray(photo[13 * i : 13 * i + height, 19 * i : 19 * i + width]) for i in range(count)]


def test_text_embeddings_equal_a_plain_forward_and_follow_the_instruction(scorer, plain):
    texts = ["A man walks his dog in the park.", "A cat.", "The woman rides a red bicycle past the tea shop."]
    got = scorer.embed_texts(texts)  # one batch, right-padded to the longest
    expected = np.stack([plain.text(text) for text in texts])
    assert got.shape == expected.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    other = scorer.embed_texts(texts[:1], instruction=CORPUS)
    np.testing.assert_allclose(other[0], plain.text(texts[0], instruction=CORPUS), rtol=0, atol=1e-5)
    assert np.abs(other[0] - expected[0]).max() > 1e-3  # the instruction is part of what is embedded


def test_image_embeddings_equal_a_plain_forward_with_gme_s_resizes_and_positions(scorer, plain):
    images = [*photos(2), photos(3, height=100, width=150)[2]]  # two sizes in one batch: padded
    got = scorer.embed_images(images)
    expected, grids = zip(*(plain.image(image) for image in images))
    np.testing.assert_allclose(got, np.stack(expected), rtol=0, atol=1e-5)
    # 100x150 -> fetch_image's 112x140 (20 tokens) -> up to >= 256 tokens: ceil(112 * 3.578 / 28) = 15 and
    # ceil(140 * 3.578 / 28) = 18 merged 28-px tokens, i.e. a 30 x 36 patch grid (270 tokens).
    assert grids[2] == (1, 30, 36)
    one_stage, grid = plain.image(images[2], pre_resize=False)
    assert grid == (1, 28, 40) and np.abs(one_stage - got[2]).max() > 1e-4  # the pre-resize shows
    mrope, _ = plain.image(images[0], mrope=True)
    assert np.abs(mrope - got[0]).max() > 1e-4  # and so would Qwen2-VL's 3-D positions


def test_image_token_bounds_set_the_processor_s_pixel_range(model_dir):
    small = GmeScorer(model_dir, min_image_tokens=4, max_image_tokens=16)
    assert small.processor.image_processor.size.shortest_edge == 4 * 784
    assert small.processor.image_processor.size.longest_edge == 16 * 784
    image = photos(1, height=100, width=150)[0]  # 112x140 = 20 tokens > 16: scaled down to 84x112 (12 tokens)
    expected, grid = PlainGme(model_dir, 4, 16).image(image)
    assert grid == (1, 6, 8)
    np.testing.assert_allclose(small.embed_images([image])[0], expected, rtol=0, atol=1e-5)


def test_video_score_is_the_mean_over_opens2v_s_32_sampled_frames(scorer, plain):
    frames = np.stack(photos(16))
    prompt = "An astronaut smiles at the camera."
    text = plain.text(prompt)
    per_frame = np.array([plain.image(frame)[0] @ text for frame in frames])
    sampled = np.linspace(0, 15, 32, dtype=int)  # get_gmescore.py's sampling of a 16-frame video
    result = scorer.score_video(frames, prompt)
    assert list(result.indices) == sampled.tolist()
    np.testing.assert_allclose(result.frame_scores, per_frame, rtol=0, atol=1e-5)
    assert result.score == pytest.approx(per_frame[sampled].mean(), abs=1e-5)
    assert abs(result.score - per_frame.mean()) > 1e-6  # repeats weigh frame 0 three times, frame 15 once
    assert np.ptp(per_frame) > 1e-3  # frames score differently, so a mix-up would show


def test_fewer_sampled_frames_score_only_those(model_dir, plain):
    scorer = GmeScorer(model_dir, num_frames=4, instruction=CORPUS)
    frames = np.stack(photos(10))
    result = scorer.score_video(frames, "A helmet.")
    assert result.indices == (0, 3, 6, 9) and len(result.frame_scores) == 4
    text = plain.text("A helmet.", instruction=CORPUS)
    expected = [plain.image(frames[i])[0] @ text for i in (0, 3, 6, 9)]
    np.testing.assert_allclose(result.frame_scores, expected, rtol=0, atol=1e-5)
    assert result.score == pytest.approx(np.mean(expected), abs=1e-5)


def test_describes_the_model_and_a_digest_of_its_weights(scorer, model_dir, tmp_path):
    import transformers

    described = scorer.describe()
    assert described["name"] == "gme-qwen2-vl" and described["version"] == transformers.__version__
    assert described["model"] == model_dir and described["weights"] == model_dir
    assert described["digest"].startswith("sha256:") and described["digest"] == scorer.digest
    assert (described["num_frames"], described["min_image_tokens"], described["max_image_tokens"]) == (32, 256, 1280)
    assert described["instruction"] == QUERY and described["dtype"] == "float32"
    same = GmeScorer(save_random_gme(tmp_path / "same", seed=0))
    other = GmeScorer(save_random_gme(tmp_path / "other", seed=1))
    assert same.digest == scorer.digest and other.digest != scorer.digest
    assert other.describe()["weights"] == str(tmp_path / "other")


def test_reads_the_model_from_the_hub_cache_offline(model_dir, scorer, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    owner, name = GME_MODEL.split("/")
    snapshot = tmp_path / "hub" / f"models--{owner}--{name}" / "snapshots" / ("0" * 40)
    shutil.copytree(model_dir, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    cached = GmeScorer()
    assert cached.describe()["model"] == GME_MODEL and cached.describe()["weights"] == str(snapshot)
    assert cached.digest == scorer.digest
    np.testing.assert_allclose(cached.embed_texts(["A dog."]), scorer.embed_texts(["A dog."]), rtol=0, atol=1e-6)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=f"`model` '{GME_MODEL}' is not in the Hugging Face cache.*hf download {GME_MODEL}"):
        GmeScorer()


def test_half_precision_is_an_option(model_dir, scorer):
    half = GmeScorer(model_dir, dtype="bfloat16")
    assert half.describe()["dtype"] == "bfloat16" and next(half.model.parameters()).dtype == torch.bfloat16
    images = photos(2)
    np.testing.assert_allclose(half.embed_images(images), scorer.embed_images(images), atol=0.05)


def test_bad_inputs_are_refused_by_name(scorer, model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="`model` .*absent.*no such directory"):
        GmeScorer(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="`model` .*without config.json"):
        GmeScorer(str(tmp_path / "empty"))
    shutil.copytree(model_dir, tmp_path / "no-weights", ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(FileNotFoundError, match=r"no \*.safetensors"):
        GmeScorer(str(tmp_path / "no-weights"))
    shutil.copytree(model_dir, tmp_path / "vit")
    (tmp_path / "vit" / "config.json").write_text('{"model_type": "vit"}')
    with pytest.raises(ValueError, match="`model` .* is a 'vit' checkpoint, not Qwen2-VL"):
        GmeScorer(str(tmp_path / "vit"))
    from safetensors.torch import load_file, save_file

    shutil.copytree(model_dir, tmp_path / "partial")
    tensors = load_file(tmp_path / "partial" / "model.safetensors")
    del tensors["lm_head.weight"], tensors["visual.merger.mlp.2.weight"]
    save_file(tensors, tmp_path / "partial" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"lack 1 tensors, e.g. \['model.visual.merger.mlp.2.weight'\]"):
        GmeScorer(str(tmp_path / "partial"))
    frames = np.stack(photos(4))
    with pytest.raises(ValueError, match="`frames` must be uint8"):
        scorer.score_video(frames.astype(np.float32), "A man.")
    with pytest.raises(ValueError, match="`frames` must be uint8 RGB"):
        scorer.score_video(frames[0], "A man.")
    with pytest.raises(ValueError, match="`prompt` must be a non-empty string"):
        scorer.score_video(frames, "  ")
    with pytest.raises(ValueError, match="`texts` is empty"):
        scorer.embed_texts([])
    with pytest.raises(ValueError, match=r"`texts\[1\]` must be a non-empty string"):
        scorer.embed_texts(["A man.", ""])
    with pytest.raises(ValueError, match=r"`images\[0\]` must be a uint8 RGB"):
        scorer.embed_images([frames[0].astype(np.float32)])
    for options, message in (
        ({"dtype": "float64"}, "`dtype` must be one of"),
        ({"min_image_tokens": 64, "max_image_tokens": 32}, "`min_image_tokens` .* must not exceed"),
        ({"num_frames": 0}, "`num_frames` must be an integer >= 1"),
        ({"instruction": ""}, "`instruction` must be a non-empty string"),
    ):
        with pytest.raises(ValueError, match=message):
            GmeScorer(model_dir, **options)


def test_a_registry_builds_it_and_stages_its_weights(model_dir):
    registry = BackendRegistry({"gme": {"gme-qwen2-vl": "metrics.backends.gme:GmeScorer"}})
    built = registry.build("gme", BackendSpec("gme-qwen2-vl", {"model": model_dir, "batch_size": 4}), device="cpu")
    assert isinstance(built, GmeScorer) and built.batch_size == 4 and built.num_frames == 32
    assert registry.weights("gme", BackendSpec("gme-qwen2-vl", {"model": model_dir})) == [WeightSource("gme", "local", model_dir)]
    assert registry.weights("gme", BackendSpec("gme-qwen2-vl", {})) == [WeightSource("gme", "hf-repo", GME_MODEL, GME_HUB_FILES)]
    with pytest.raises(ValueError, match=r"takes no \['frames'\]"):
        registry.check("gme", BackendSpec("gme-qwen2-vl", {"frames": 16}))
