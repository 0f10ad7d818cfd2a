"""Every metric backend through its real loader on tiny saved models, and the one-pass suite on top."""

import json

import av
import numpy as np
import pytest
import torch

from metrics.backends import BackendSpec, MetricBackendsConfig, load_backends
from metrics.backends.flow import OpenCVFlow, RAFTFlow
from metrics.dynamic_degree import dynamic_degree, judge_video, pair_score
from metrics.records import RECORD_SCHEMA, ScoreRequest, records_table, score_requests
from metrics.suite import MetricSuite, VideoToScore


@pytest.fixture(scope="module")
def backends(tiny_metric_models):
    return load_backends(tiny_metric_models)


@pytest.fixture(scope="module")
def suite(backends):
    return MetricSuite(backends)


def textured(height=128, width=128, seed=0):
    from skimage import data

    photo = data.astronaut()
    y, x = (seed * 37) % (512 - height), (seed * 53) % (512 - width)
    return np.ascontiguousarray(photo[y : y + height, x : x + width])


def test_every_backend_describes_its_weights(backends):
    described = backends.describe()
    assert described["clip"]["activation"] == "QuickGELU"  # the tiny CLIP's config says quick_gelu, like OpenAI's
    assert described["dino"]["layer_norm_eps"] == 1e-6
    assert {role: d["name"] for role, d in described.items()} == {
        "clip": "open_clip",
        "dino": "transformers-dino",
        "face": "insightface",
        "flow": "raft",
    }
    for role, description in described.items():
        assert description["digest"].startswith("sha256:") and description["version"], role


def test_identical_frames_give_t_cons_one_and_reference_frames_give_clip_i_and_dino_i_one(suite):
    reference = textured(seed=1)
    (scores,) = suite.score([VideoToScore(np.stack([reference] * 16), "A person wearing sunglasses.", reference)])
    assert scores.t_cons == pytest.approx(1.0, abs=1e-6)
    assert scores.clip_i == pytest.approx(1.0, abs=1e-6)
    assert scores.dino_i == pytest.approx(1.0, abs=1e-6)


def test_clip_t_equals_a_direct_open_clip_computation(suite, tiny_metric_models):
    import open_clip
    from PIL import Image

    prompt = "A person playing an acoustic guitar."
    image = textured(seed=2)
    (scores,) = suite.score([VideoToScore(np.stack([image] * 16), prompt, textured(seed=3))])

    name = tiny_metric_models.clip.options["model"]
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    with torch.no_grad():
        image_emb = model.encode_image(preprocess(Image.fromarray(image))[None])[0]
        text_emb = model.encode_text(open_clip.get_tokenizer(name)([prompt]))[0]
    expected = torch.nn.functional.cosine_similarity(image_emb, text_emb, dim=0).item()
    assert scores.clip_t == pytest.approx(expected, abs=1e-5)


def test_dino_uses_the_cls_token_of_the_last_hidden_state(backends, tiny_metric_models):
    from transformers import ViTModel

    image = textured(seed=4)
    model = ViTModel.from_pretrained(tiny_metric_models.dino.options["model"], add_pooling_layer=False).eval()
    from PIL import Image

    resized = np.asarray(Image.fromarray(image).resize((224, 224), Image.Resampling.BILINEAR))  # the author's stretch
    pixels = torch.from_numpy(resized).permute(2, 0, 1)[None].float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model(pixel_values=(pixels - mean) / std).last_hidden_state[0, 0].numpy()
    np.testing.assert_allclose(backends.dino.embed_images([image])[0], expected, atol=1e-5)


def two_faces(size=256):
    frame = np.zeros((size, size, 3), np.uint8)
    frame[32:64, 32:64] = 255  # small face
    frame[128:224, 96:192] = 255  # large face
    return frame


def test_insightface_embeds_the_largest_face_like_face_analysis(backends):
    from metrics.suite import largest_face_embedding

    frame = two_faces()
    faces = backends.face.app.get(np.ascontiguousarray(frame[..., ::-1]))
    largest = max(faces, key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))
    np.testing.assert_allclose(largest_face_embedding(backends.face, frame), largest.normed_embedding, atol=1e-5)
    assert largest_face_embedding(backends.face, np.zeros((256, 256, 3), np.uint8)) is None


def test_raft_matches_torchvision_raft_large_called_directly(backends, tiny_metric_models):
    from torchvision.models.optical_flow import raft_large

    frames = np.stack([textured(seed=s) for s in range(3)])
    model = raft_large(weights=None)
    model.load_state_dict(torch.load(tiny_metric_models.flow.options["weights"], weights_only=True))
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    with torch.no_grad():
        expected = model.eval()(video[:-1], video[1:], num_flow_updates=2)[-1].permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(backends.flow.consecutive_flows(frames), expected, atol=1e-4)


def test_raft_pads_odd_sizes_and_returns_the_padded_flow_or_the_frame_on_request(backends, tiny_metric_models):
    frames = np.stack([textured(130, 141, seed=s) for s in range(2)])
    padded = backends.flow.consecutive_flows(frames)
    assert padded.shape == (1, 136, 144, 2)  # VBench scores the flow over the frame padded to multiples of 8
    cropped = RAFTFlow(**tiny_metric_models.flow.options, crop_to_frame=True).consecutive_flows(frames)
    np.testing.assert_allclose(cropped[0], padded[0, 3:133, 1:142], atol=1e-5)  # 6 and 3 rows/columns split evenly
    with pytest.raises(ValueError, match="too small for RAFT"):
        backends.flow.consecutive_flows(np.zeros((2, 64, 64, 3), np.uint8))


def panning_video(shift_px: int, frames=16, size=256):
    """A textured photo panned by `shift_px` pixels per frame (a known translation)."""
    from skimage import data

    photo = np.ascontiguousarray(data.astronaut())  # 512x512
    return np.stack([photo[100 : 100 + size, 10 + i * shift_px : 10 + i * shift_px + size] for i in range(frames)])


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_opencv_flow_measures_a_known_translation_and_dd_separates_static_from_fast(method):
    flow = OpenCVFlow(method)
    measured = flow.consecutive_flows(panning_video(8))
    assert np.median(measured[..., 0]) == pytest.approx(-8, abs=1.0)  # content moves left by 8 px
    assert np.abs(np.median(measured[..., 1])) < 0.5

    verdicts = []
    for shift in (0, 0, 12, 12):  # static twice, fast twice; the threshold at 256 px is 6 px
        pair_scores = [pair_score(f) for f in flow.consecutive_flows(panning_video(shift))]
        verdicts.append(judge_video(pair_scores, height=256, width=256, num_frames=16).dynamic)
    assert verdicts == [False, False, True, True]
    assert dynamic_degree(verdicts[:2]) == 0.0 and dynamic_degree(verdicts[2:]) == 1.0


def test_one_pass_embeds_each_frame_once_and_each_reference_and_prompt_once(backends):
    calls = {"images": [], "texts": []}

    class Counting:
        def __init__(self, inner):
            self.inner = inner

        def embed_images(self, images):
            calls["images"].append(len(images))
            return self.inner.embed_images(images)

        def embed_texts(self, texts):
            calls["texts"].append(list(texts))
            return self.inner.embed_texts(texts)

        def describe(self):
            return self.inner.describe()

    from metrics.backends import MetricBackends

    suite = MetricSuite(MetricBackends(clip=Counting(backends.clip), dino=backends.dino, face=None, flow=OpenCVFlow()))
    ref_a, ref_b = textured(seed=5), textured(seed=6)
    videos = [VideoToScore(panning_video(1, size=128), p, r) for p, r in (("p1", ref_a), ("p2", ref_a), ("p1", ref_b))]
    suite.score(videos)
    assert calls["images"] == [2, 48]  # the two references once, then every frame once
    assert calls["texts"] == [["p1", "p2"]]
    suite.score(videos[:1])
    assert calls["images"][-1] == 16 and calls["texts"] == [["p1", "p2"]]  # cached across calls


def write_mp4(path, frames, fps=8):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "10"})
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_records_name_every_bad_input_and_score_the_rest(suite, tmp_path):
    from PIL import Image

    face_ref = tmp_path / "face.png"
    Image.fromarray(two_faces(128)).save(face_ref)
    blank_ref = tmp_path / "blank.png"
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(blank_ref)
    good = write_mp4(tmp_path / "good.mp4", np.stack([two_faces(128)] * 16))
    short = write_mp4(tmp_path / "short.mp4", np.stack([two_faces(128)] * 9))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")

    requests = [
        ScoreRequest(str(good), "s1", "A person.", str(face_ref)),
        ScoreRequest(str(broken), "s1", "A person.", str(face_ref)),
        ScoreRequest(str(good), "s2", "A person.", str(tmp_path / "missing.png")),
        ScoreRequest(str(short), "s1", "A person.", str(face_ref)),
        ScoreRequest(str(tmp_path / "nowhere.mp4"), "s1", "A person.", str(face_ref)),
        ScoreRequest(str(good), "s3", "A person.", str(blank_ref)),
        ScoreRequest(str(good), "cat", "A cat is running.", str(face_ref), set="object", subject_class="cat"),
    ]
    records = score_requests(suite, requests)
    assert [(r["status"], r["error"]) for r in records] == [
        ("ok", None),
        ("error", "video_unreadable"),
        ("error", "reference_missing"),
        ("error", "frame_count_mismatch"),
        ("error", "video_missing"),
        ("ok", None),
        ("ok", None),
    ]
    assert "9 frames, expected 16" in records[3]["message"] and "missing.png" in records[2]["message"]
    assert records[0]["face_status"] == "scored" and records[0]["face_detection_rate"] == 1.0
    assert records[5]["face_status"] == "reference_has_no_face" and records[5]["face_sim"] is None
    assert "no detectable face" in records[5]["message"]
    assert records[6]["face_status"] == "not_scored" and records[6]["face_frames"] is None
    assert records[0]["frames"] == 16 and len(records[0]["dd_pair_scores"]) == 15
    assert json.loads(records[0]["backends"])["flow"]["name"] == "raft"
    assert records_table(records).schema == RECORD_SCHEMA


def test_gif_frames_are_scored_and_their_file_recorded(suite, tmp_path):
    from PIL import Image

    frames = panning_video(4, size=128)
    gif = tmp_path / "clip.gif"
    Image.fromarray(frames[0]).save(gif, save_all=True, append_images=[Image.fromarray(f) for f in frames[1:]], duration=125, loop=0)
    reference = tmp_path / "ref.png"
    Image.fromarray(frames[0]).save(reference)
    (record,) = score_requests(suite, [ScoreRequest(str(gif), "s", "A person.", str(reference), subject_class="object")])
    assert record["status"] == "ok" and record["frames"] == 16 and record["video"] == str(gif)


def test_unknown_backend_names_list_the_choices():
    with pytest.raises(ValueError, match=r"flow.name='flownet'.*\['opencv', 'raft'\]"):
        load_backends(MetricBackendsConfig(flow=BackendSpec("flownet")))


def test_options_a_backend_does_not_take_are_named():
    with pytest.raises(ValueError, match=r"flow.options\): opencv takes no \['weights'\]. Valid options: \['method'\]"):
        load_backends(MetricBackendsConfig(face=None, flow=BackendSpec("opencv", {"weights": "C_T_V1"})))


def test_missing_weights_say_how_to_stage_them(tmp_path):
    from metrics.backends.faces import InsightFaceEmbedder

    with pytest.raises(FileNotFoundError, match="buffalo_l.zip"):
        InsightFaceEmbedder(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="C_T_V1"):
        RAFTFlow(str(tmp_path / "raft.pth"))


def test_published_weights_fail_offline_with_a_way_out():
    from metrics.backends.clip import OpenCLIPEmbedder
    from metrics.backends.dino import DINOEmbedder

    with pytest.raises(FileNotFoundError, match="offline machine"):
        OpenCLIPEmbedder("ViT-B-32", "openai")
    with pytest.raises(FileNotFoundError, match="local directory"):
        DINOEmbedder("facebook/dino-vits16")
