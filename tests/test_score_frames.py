"""Which frames each metric reads: lossless frames for the embedding metrics, the GIF for DD, and
GIFs whose identical frames Pillow merged are kept, never dropped.

Files are written by the project's own writers (`videomaker.export`, `write_item`); expectations come
from Pillow decoding the GIF directly and from the frames held in memory.
"""

import json

import numpy as np
import pytest
from PIL import Image

from metrics.backends import MetricBackends, load_backend
from metrics.backends.flow import OpenCVFlow
from metrics.dynamic_degree import pair_score
from metrics.io import expand_by_duration, read_frames
from metrics.records import RECORD_SCHEMA, ScoreRequest, records_table, score_requests
from metrics.suite import MetricSuite, VideoToScore

STATIC = slice(5, 10)  # frames 5..9 identical: the GIF writer stores them once


def video_with_static_stretch(size=128, seed=0):
    """16 frames of a panned photo (plus faint noise, so palettes differ) with a static stretch."""
    from skimage import data

    photo = np.ascontiguousarray(data.astronaut())
    frames = np.stack([photo[100 : 100 + size, 10 + 6 * i : 10 + 6 * i + size] for i in range(16)])
    frames[STATIC] = frames[STATIC.start]
    return frames


def pillow_frames(path):
    """Every frame Pillow decodes from the GIF, with its duration: the author's reading of a GIF."""
    frames, durations = [], []
    with Image.open(path) as gif:
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB")))
            durations.append(gif.info["duration"])
    return np.stack(frames), durations


@pytest.fixture(scope="module")
def suite(tiny_metric_models):
    backends = MetricBackends(
        clip=load_backend("clip", tiny_metric_models.clip), dino=load_backend("dino", tiny_metric_models.dino), face=None, flow=OpenCVFlow()
    )
    return MetricSuite(backends)


@pytest.fixture
def item(tmp_path):
    """One generated item as evaluation writes it: mp4, GIF, lossless .mkv and the sidecar."""
    from pipelines.evaluation.generation import write_item

    frames = video_with_static_stretch()
    stem = tmp_path / "videos" / "p00_s0"
    write_item(str(stem), frames, {"prompt": "x"}, fps=8)
    reference = tmp_path / "ref.png"
    Image.fromarray(frames[0]).save(reference)
    return frames, stem, str(reference)


def test_the_gif_writer_merges_the_static_stretch(item):
    frames, stem, _ = item
    decoded, durations = pillow_frames(f"{stem}.gif")
    assert len(decoded) == 16 - (STATIC.stop - STATIC.start - 1)  # 12: the precondition the rest relies on
    assert durations[STATIC.start] > 4 * durations[0]


def test_lossless_frames_are_bit_exact_and_listed_in_the_sidecar(item):
    frames, stem, _ = item
    sidecar = json.loads((stem.parent / "p00_s0.json").read_text())
    assert set(sidecar["files"]) == {"p00_s0.mp4", "p00_s0.gif", "p00_s0.mkv"}
    np.testing.assert_array_equal(read_frames(f"{stem}.mkv").frames, frames)


def test_merged_gif_frames_expand_back_to_what_the_gif_shows(item):
    frames, stem, _ = item
    decoded, durations = pillow_frames(f"{stem}.gif")
    expanded = read_frames(f"{stem}.gif", expected_frames=16)
    assert expanded.gif and expanded.decoded == 12 and len(expanded.frames) == 16
    # Independently: GIF frame k is shown for durations[k]; repeat it that many nominal frames.
    repeats = [round(d / min(durations)) for d in durations]
    np.testing.assert_array_equal(expanded.frames, np.repeat(decoded, repeats, axis=0))
    # and each expanded frame is the palette version of the generated frame at that position
    errors = [[np.abs(e.astype(int) - f.astype(int)).mean() for f in frames] for e in expanded.frames]
    assert [int(np.argmin(row)) if i not in range(6, 10) else STATIC.start for i, row in enumerate(errors)] == [
        i if i not in range(6, 10) else STATIC.start for i in range(16)
    ]
    np.testing.assert_array_equal(read_frames(f"{stem}.gif", gif_frames="decoded").frames, decoded)


def test_expansion_by_duration_handles_centisecond_rounding():
    frames = np.arange(4, dtype=np.uint8).reshape(4, 1, 1, 1).repeat(3, axis=-1)
    # 125 ms frames stored as 12 cs; a merged run of 5 stored as 62 cs: 4 frames for 16 nominal ones fails
    np.testing.assert_array_equal(expand_by_duration(frames, [120, 620, 120, 1080], 16)[:, 0, 0, 0], [0] + [1] * 5 + [2] + [3] * 9)
    np.testing.assert_array_equal(expand_by_duration(frames, [0, 0, 0, 0], 16), frames)  # no timing: as decoded


def test_a_video_whose_gif_merged_frames_is_scored_and_kept(suite, item):
    """The embedding metrics read the lossless frames, DD the GIF; the merged GIF drops nothing."""
    frames, stem, reference = item
    request = ScoreRequest(f"{stem}.mkv", "s", "A person.", reference, dd_video=f"{stem}.gif", subject_class="object")
    (record,) = score_requests(suite, [request])
    assert record["status"] == "ok" and record["video"] == f"{stem}.mkv" and record["dd_video"] == f"{stem}.gif"
    assert record["frames"] == 16 and record["dd_frames"] == 16 and record["dd_file_frames"] == 12
    assert record["dd_gif_frames"] == "expand" and len(record["dd_pair_scores"]) == 15
    # the embedding metrics saw exactly the generated frames
    (direct,) = suite.score([VideoToScore(frames, "A person.", np.asarray(Image.open(reference).convert("RGB")))])
    assert record["clip_t"] == pytest.approx(direct.clip_t, abs=1e-9) and record["t_cons"] == pytest.approx(direct.t_cons, abs=1e-9)
    # DD saw the GIF's frames (not the lossless ones): the static stretch gives four pairs without motion
    decoded, durations = pillow_frames(f"{stem}.gif")
    gif_frames = np.repeat(decoded, [round(d / min(durations)) for d in durations], axis=0)
    flow = OpenCVFlow()
    np.testing.assert_allclose(record["dd_pair_scores"], [pair_score(f) for f in flow.consecutive_flows(gif_frames)], atol=1e-9)
    assert not np.allclose(record["dd_pair_scores"], [pair_score(f) for f in flow.consecutive_flows(frames)], atol=1e-6)
    assert max(record["dd_pair_scores"][5:9]) < 1e-6
    assert records_table([record]).schema == RECORD_SCHEMA


def test_decoded_gif_frames_follow_the_authors_pair_count(suite, item):
    frames, stem, reference = item
    request = ScoreRequest(f"{stem}.mkv", "s", "A person.", reference, dd_video=f"{stem}.gif", subject_class="object")
    (record,) = score_requests(suite, [request], dd_gif_frames="decoded")
    assert record["status"] == "ok" and record["frames"] == 16
    assert record["dd_frames"] == 12 and len(record["dd_pair_scores"]) == 11
    assert record["dd_pairs_required"] == round(4 * 12 / 16) and record["dd_gif_frames"] == "decoded"


def test_a_gif_alone_is_scored_whole_and_recorded(suite, item):
    """A manifest naming only a GIF (another code base's video): every metric reads it, nothing is dropped."""
    frames, stem, reference = item
    (record,) = score_requests(suite, [ScoreRequest(f"{stem}.gif", "s", "A person.", reference, subject_class="object")])
    assert record["status"] == "ok" and record["frames"] == 16
    assert record["video"] == record["dd_video"] == f"{stem}.gif" and record["dd_file_frames"] == 12


def test_a_gif_of_one_stored_frame_is_static_when_read_as_decoded(suite, tmp_path):
    from videomaker.export import write_gif

    still = np.stack([video_with_static_stretch()[0]] * 16)
    gif = write_gif(still, tmp_path / "still.gif")
    reference = tmp_path / "ref.png"
    Image.fromarray(still[0]).save(reference)
    request = ScoreRequest(str(gif), "s", "A person.", str(reference), subject_class="object")
    (decoded,) = score_requests(suite, [request], dd_gif_frames="decoded")
    (expanded,) = score_requests(suite, [request])
    assert decoded["status"] == expanded["status"] == "ok"
    assert decoded["dd_frames"] == 1 and decoded["dd_dynamic"] is False and decoded["frames"] == 16
    assert expanded["dd_frames"] == 16 and expanded["dd_dynamic"] is False


def test_evaluation_reads_lossless_for_embeddings_and_the_gif_for_dd(item):
    from pipelines.evaluation.evaluate import scored_file

    _, stem, _ = item
    assert scored_file(str(stem), "lossless") == f"{stem}.mkv"
    assert scored_file(str(stem), "gif") == f"{stem}.gif"
    assert scored_file(str(stem), "mp4") == f"{stem}.mp4"


def test_an_item_with_one_file_is_read_from_it(tmp_path):
    from pipelines.evaluation.evaluate import scored_file

    stem = tmp_path / "p00_s0"
    (tmp_path / "p00_s0.mp4").write_bytes(b"x")
    (tmp_path / "p00_s0.json").write_text(json.dumps({"files": {"p00_s0.mp4": 1}}))
    assert scored_file(str(stem), "lossless") == scored_file(str(stem), "gif") == f"{stem}.mp4"


def test_bad_frame_options_are_refused_by_name():
    from pipelines.configs import validate
    from pipelines.evaluation.config import EvaluationConfig

    with pytest.raises(ValueError, match="embedding_frames: got 'png'"):
        validate(EvaluationConfig, {"benchmark": "b.csv", "output_dir": "o", "embedding_frames": "png"})
    with pytest.raises(ValueError, match="dd_gif_frames: got 'merge'"):
        validate(EvaluationConfig, {"benchmark": "b.csv", "output_dir": "o", "dd_gif_frames": "merge"})
    with pytest.raises(ValueError, match="score_file.*Use embedding_frames"):
        EvaluationConfig(benchmark="b.csv", output_dir="o", score_file="gif")
    with pytest.raises(ValueError, match="gif_frames"):
        read_frames("anything.gif", gif_frames="all")


def test_a_reference_is_scored_upright_by_its_exif_orientation_as_generation_reads_it(tmp_path):
    from PIL import Image, ImageOps

    from metrics.io import read_image
    from videomaker.references import load_reference

    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = 255  # a white band on the left, so a rotation shows
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    path = tmp_path / "tagged.jpg"
    image.save(path, quality=100, exif=exif)
    with Image.open(path) as stored:
        upright = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"))
    scored = read_image(str(path))
    assert scored.shape == (40, 20, 3) == upright.shape
    np.testing.assert_array_equal(scored, upright)
    np.testing.assert_array_equal(scored, np.asarray(load_reference(str(path))))  # what the generator was given
