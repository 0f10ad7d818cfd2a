"""Per-frame evidence in the score records, against a recomputation written here from the same models.

The tiny buffalo_l-shaped pack finds bright squares as faces; black frames have none. Each per-frame
column must be what the video's value averages (CLIP-I, DINO-I, Face Sim), come from the one pass
(one detection per frame), and reach the samples/records tables (parquet, and CSV as JSON text).
"""

import json

import av
import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from PIL import Image

from metrics.backends import MetricBackends, load_backends
from metrics.backends.flow import OpenCVFlow
from metrics.io import read_frames, read_image
from metrics.records import RECORD_SCHEMA, ScoreRequest, records_table, score_requests
from metrics.suite import MetricSuite

FRAMES, SIZE = 16, 128
FACE_FRAMES = (0, 1, 2, 5, 6, 9, 12, 15)  # the frames that show a face; the others are black
PEACH, SKY = (255, 215, 150), (170, 230, 250)  # channel order changes ArcFace's input: paper and corrected differ
FRAME_COLUMNS = ("frame_clip_i", "frame_dino_i", "frame_face_found", "frame_face_box", "frame_face_det_score", "frame_face_sim")


class CountingFaces:
    """The face backend, counting its detections and embeddings (the evidence must cost none extra)."""

    def __init__(self, inner):
        self.inner, self.detections, self.embeddings = inner, 0, 0

    def detect(self, image):
        self.detections += 1
        return self.inner.detect(image)

    def embed(self, image, face):
        self.embeddings += 1
        return self.inner.embed(image, face)

    def describe(self):
        return self.inner.describe()


@pytest.fixture(scope="module")
def models(tiny_metric_models):
    return load_backends(tiny_metric_models)


def face_frame(index):
    frame = np.zeros((SIZE, SIZE, 3), np.uint8)
    if index in FACE_FRAMES:
        frame[8 + index : 40 + index, 8:40] = SKY  # a small face
        frame[56:120, 40 + index : 104 + index] = PEACH  # the largest face, moving
    return frame


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("evidence")
    video = root / "some_faces.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=8, options={"crf": "10"})
        stream.height, stream.width, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        for index in range(FRAMES):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(face_frame(index), format="rgb24")))
        container.mux(stream.encode())
    reference = np.zeros((160, 160, 3), np.uint8)
    reference[30:130, 40:140] = PEACH
    Image.fromarray(reference).save(root / "ref.png")
    Image.fromarray(np.zeros((160, 160, 3), np.uint8)).save(root / "faceless.png")
    return {"video": str(video), "reference": str(root / "ref.png"), "faceless": str(root / "faceless.png"), "root": root}


def unit(rows):
    rows = np.asarray(rows, np.float64)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def expected_face(backend, image, *, protocol, reference):
    """The face each protocol uses, written out: corrected = largest face of the RGB image; paper = the
    channel-swapped image (and the reference stretched to 512x512 bicubic), its first face for the
    reference, the last by area for a frame."""
    if protocol == "paper":
        if reference:
            image = np.asarray(Image.fromarray(image).resize((512, 512), Image.Resampling.BICUBIC))
        image = np.ascontiguousarray(image[..., ::-1])
    faces = backend.detect(image)
    if not faces:
        return None, None
    if protocol == "paper":
        face = faces[0] if reference else sorted(faces, key=lambda f: f.area)[-1]
    else:
        face = max(faces, key=lambda f: (f.x1 - f.x0) * (f.y1 - f.y0))
    return face, backend.embed(image, face)


@pytest.mark.parametrize("protocol", ["corrected", "paper"])
def test_per_frame_columns_are_what_each_video_value_averages(models, files, protocol):
    faces = CountingFaces(models.face)
    suite = MetricSuite(MetricBackends(clip=models.clip, dino=models.dino, face=faces, flow=OpenCVFlow()), face_protocol=protocol)
    (record,) = score_requests(suite, [ScoreRequest(files["video"], "s1", "A person.", files["reference"])])
    assert record["status"] == "ok" and record["face_status"] == "scored" and record["face_protocol"] == protocol
    # One detection per frame and one for the reference; one embedding per face used: nothing extra for the evidence.
    assert faces.detections == FRAMES + 1 and faces.embeddings == len(FACE_FRAMES) + 1

    frames = read_frames(files["video"]).frames
    reference = read_image(files["reference"])
    for column, backend in (("clip_i", models.clip), ("dino_i", models.dino)):
        expected = unit(backend.embed_images(list(frames))) @ unit(backend.embed_images([reference]))[0]
        per_frame = record[f"frame_{column}"]
        assert len(per_frame) == FRAMES
        np.testing.assert_allclose(per_frame, expected, atol=1e-5)
        assert np.mean(per_frame) == pytest.approx(record[column], abs=1e-12)

    _, reference_face = expected_face(models.face, reference, protocol=protocol, reference=True)
    expected = [expected_face(models.face, frame, protocol=protocol, reference=False) for frame in frames]
    assert record["frame_face_found"] == [face is not None for face, _ in expected]
    assert [k for k, found in enumerate(record["frame_face_found"]) if found] == list(FACE_FRAMES)
    assert sum(record["frame_face_found"]) == record["face_frames"] == len(FACE_FRAMES)
    for k, (face, embedding) in enumerate(expected):
        if face is None:
            assert record["frame_face_box"][k] is None and record["frame_face_det_score"][k] is None
            assert record["frame_face_sim"][k] is None
            continue
        np.testing.assert_allclose(record["frame_face_box"][k], [face.x0, face.y0, face.x1, face.y1], atol=1e-4)
        assert record["frame_face_det_score"][k] == pytest.approx(face.score, abs=1e-6)
        assert record["frame_face_sim"][k] == pytest.approx(float(unit(embedding) @ unit(reference_face)), abs=1e-5)
    x0, y0, x1, y1 = record["frame_face_box"][0]
    seen = np.ascontiguousarray(frames[0][..., ::-1]) if protocol == "paper" else frames[0]
    assert (x1 - x0) * (y1 - y0) == pytest.approx(max(f.area for f in models.face.detect(seen)))  # the largest face
    sims = [s for s in record["frame_face_sim"] if s is not None]
    assert np.mean(sims) == pytest.approx(record["face_sim"], abs=1e-12)
    assert len(record["dd_pair_scores"]) == FRAMES - 1


def test_paper_and_corrected_each_record_the_face_they_used(models, files):
    records = {}
    for protocol in ("paper", "corrected"):
        suite = MetricSuite(MetricBackends(clip=models.clip, dino=models.dino, face=models.face, flow=OpenCVFlow()), face_protocol=protocol)
        (records[protocol],) = score_requests(suite, [ScoreRequest(files["video"], "s1", "A person.", files["reference"])])
    # The RGB-vs-BGR input changes the embeddings (and with them every frame's similarity).
    paper, corrected = (np.array([s for s in records[p]["frame_face_sim"] if s is not None]) for p in ("paper", "corrected"))
    assert not np.allclose(paper, corrected, atol=1e-3)


def test_missing_faces_references_and_errors_leave_the_right_columns_empty(models, files):
    suite = MetricSuite(MetricBackends(clip=models.clip, dino=models.dino, face=models.face, flow=OpenCVFlow()))
    requests = [
        ScoreRequest(files["video"], "s1", "A person.", files["reference"]),
        ScoreRequest(files["video"], "s2", "A person.", files["faceless"]),
        ScoreRequest(files["video"], "cat", "A cat.", files["reference"], set="object", subject_class="cat"),
        ScoreRequest(str(files["root"] / "nowhere.mp4"), "s3", "A person.", files["reference"]),
    ]
    scored, faceless, cat, missing = records = score_requests(suite, requests)
    assert faceless["face_status"] == "reference_has_no_face"
    assert faceless["frame_face_found"] == scored["frame_face_found"]  # frames are still searched
    assert faceless["frame_face_sim"] == [None] * FRAMES
    assert cat["face_status"] == "not_scored" and len(cat["frame_clip_i"]) == FRAMES
    assert all(cat[c] is None for c in FRAME_COLUMNS[2:])
    assert missing["error"] == "video_missing" and all(missing[c] is None for c in FRAME_COLUMNS)

    # The tables evaluation and scoring write: samples.parquet and its CSV (list columns as JSON text).
    from pipelines.scoring.dataflow import write_results

    table = records_table(records)
    assert table.schema == RECORD_SCHEMA
    write_results(table, [], files["root"] / "scores", name="samples")
    back = pq.read_table(files["root"] / "scores" / "samples.parquet").to_pylist()
    nulls = pacsv.ConvertOptions(strings_can_be_null=True)
    text = pacsv.read_csv(files["root"] / "scores" / "samples.csv", convert_options=nulls).to_pylist()
    for record, parquet_row, csv_row in zip(records, back, text):
        for column in (*FRAME_COLUMNS, "dd_pair_scores"):
            assert parquet_row[column] == record[column]
            assert (json.loads(csv_row[column]) if csv_row[column] is not None else None) == record[column]
