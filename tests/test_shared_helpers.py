"""The helpers each concept has one home in: MLflow params, manifests, human classes, atomic writes,
the backend registry, image decoding and tables."""

from __future__ import annotations

import dataclasses

import pytest

from pipelines.tracking import MAX_PARAM_LENGTH, checkpoint_lineage, ensure_experiment, flatten_params


@dataclasses.dataclass
class _Inner:
    girl: bool = True
    weight: float = 1e-5


@dataclasses.dataclass
class _Outer:
    name: str = "run"
    seeds: tuple = (0, 1)
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    options: dict = dataclasses.field(default_factory=dict)
    checkpoint: str | None = None


def test_flatten_params_formats_every_value_one_way():
    flat = flatten_params(_Outer())
    assert flat == {"name": "run", "seeds": "[0, 1]", "inner.girl": "True", "inner.weight": "1e-05", "options": "{}", "checkpoint": "None"}
    assert all(isinstance(v, str) for v in flat.values())


def test_flatten_params_nests_dicts_and_prefixes():
    flat = flatten_params({"backend": {"name": "clip", "size": 224}, "sets": ["object", "celebrity"]}, "eval")
    assert flat == {"eval.backend.name": "clip", "eval.backend.size": "224", "eval.sets": '["object", "celebrity"]'}


def test_flatten_params_caps_values_at_mlflows_limit():
    flat = flatten_params({"prompts": ["x" * 100] * 100})
    assert len(flat["prompts"]) == MAX_PARAM_LENGTH and flat["prompts"].endswith("...")


def test_flatten_params_refuses_a_bare_value():
    with pytest.raises(ValueError, match="flatten_params"):
        flatten_params(3)


# --- manifests ------------------------------------------------------------------------------------


def test_experiments_open_in_the_training_runs_view(tmp_path):
    """MLflow 3's UI picks an experiment's view by `mlflow.experimentKind`; ours is the runs table."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    new = ensure_experiment(uri, "videomaker-train", output_dir=str(tmp_path))
    client = mlflow.MlflowClient(uri)
    assert client.get_experiment(new).tags["mlflow.experimentKind"] == "custom_model_development"
    # An experiment made before the tag existed gets it; one a user tagged keeps the user's kind.
    old = client.create_experiment("older", artifact_location=(tmp_path / "a").as_uri())
    mine = client.create_experiment(
        "mine", artifact_location=(tmp_path / "b").as_uri(), tags={"mlflow.experimentKind": "genai_development"}
    )
    assert ensure_experiment(uri, "older", output_dir=str(tmp_path)) == old
    assert ensure_experiment(uri, "mine", output_dir=str(tmp_path)) == mine
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
    assert client.get_experiment(mine).tags["mlflow.experimentKind"] == "genai_development"


def test_checkpoint_lineage_names_the_training_run_and_step(tmp_path):
    import json

    checkpoint = tmp_path / "run" / "checkpoint_00000040"
    (checkpoint / "ema").mkdir(parents=True)
    (checkpoint / "videomaker.json").write_text(json.dumps({"progress": {"global_step": 40, "mlflow_run_id": "abc123"}}))
    (checkpoint / "ema" / "videomaker.json").write_text(json.dumps({"ema_decay": 0.999}))  # EMA weights keep no progress
    expected = {"videomaker.training_run_id": "abc123", "videomaker.checkpoint_step": "40"}
    assert checkpoint_lineage(str(checkpoint)) == expected
    assert checkpoint_lineage(str(checkpoint / "ema")) == expected  # from the checkpoint it belongs to
    untracked = tmp_path / "untracked"
    untracked.mkdir()
    (untracked / "videomaker.json").write_text(json.dumps({"progress": {"global_step": 3, "mlflow_run_id": None}}))
    for other in (str(untracked), "hf:SugerWu/VideoMaker/human_pytorch_model.bin", str(tmp_path / "missing"), None):
        assert checkpoint_lineage(other) == {}, other


def test_read_manifest_strips_text_keeps_ids_as_text_and_empties_become_none(tmp_path):
    from pipelines.manifests import read_manifest

    (tmp_path / "m.csv").write_text("video,subject_id,seed\n a.mp4 ,007,3\n,008, \n")
    assert read_manifest(tmp_path / "m.csv") == [
        {"video": "a.mp4", "subject_id": "007", "seed": "3"},
        {"video": None, "subject_id": "008", "seed": None},
    ]
    (tmp_path / "m.jsonl").write_text('{"video": " a.mp4", "seed": 3}\n{"video": "", "seed": null}\n')
    assert read_manifest(tmp_path / "m.jsonl") == [{"video": "a.mp4", "seed": 3}, {"video": None, "seed": None}]


def test_read_manifest_names_the_file_the_rows_and_the_missing_columns(tmp_path):
    from pipelines.manifests import read_manifest

    path = tmp_path / "m.csv"
    path.write_text("video,prompt\na.mp4,x\n, \nb.mp4,\n")
    with pytest.raises(
        ValueError,
        match=r"`manifest` '.*m.csv' has 2 bad row\(s\): row 2: empty \['video', 'prompt'\]; "
        r"row 3: empty \['prompt'\]",
    ):
        read_manifest(path, required=("video", "prompt"), where="`manifest`")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['reference'\]; it has \['video', 'prompt'\]"):
        read_manifest(path, required=("reference",))
    with pytest.raises(ValueError, match=r"must be .csv, .jsonl or .parquet, got '.txt'"):
        (tmp_path / "m.txt").write_text("x")
        read_manifest(tmp_path / "m.txt")
    with pytest.raises(FileNotFoundError, match="nope.csv' does not exist"):
        read_manifest(tmp_path / "nope.csv")


def test_every_manifest_reader_applies_the_same_string_rule(tmp_path):
    """The scoring and benchmark readers both see ' 007 ' as the subject id '007'."""
    from PIL import Image

    from pipelines.evaluation.benchmarks import read_benchmark_manifest
    from pipelines.scoring.manifest import read_score_manifest

    Image.new("RGB", (8, 8), "red").save(tmp_path / "ref.png")
    (tmp_path / "scores.csv").write_text("video,subject_id,prompt,reference\nv.mp4, 007 ,a dog, ref.png \n")
    (tmp_path / "bench.csv").write_text("subject_id,set,class,reference\n 007 ,object, dog ,ref.png\n")
    (request,) = read_score_manifest(tmp_path / "scores.csv")
    (subject,) = read_benchmark_manifest(tmp_path / "bench.csv")
    assert request.subject_id == subject.subject_id == "007"
    assert request.reference == subject.reference == str(tmp_path / "ref.png")


# --- human classes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject_class", "human"),
    [("person", True), (" Woman ", True), ("HUMAN", True), ("face", True), ("man", True), ("dog", False), ("", False), (None, False)],
)
def test_is_human_ignores_case_and_spaces(subject_class, human):
    from videomaker.subjects import is_human

    assert is_human(subject_class) is human


def test_scoring_preprocessing_and_benchmarks_agree_on_who_is_human():
    from metrics.records import ScoreRequest
    from pipelines.evaluation.benchmarks import HUMAN_SETS, classes_of
    from pipelines.preprocess.config import SubjectsConfig

    people = {"person", "human", "man", "woman", "face"}
    assert set(SubjectsConfig().human_classes) == people
    assert all(set(classes_of(s)) == people for s in HUMAN_SETS)
    assert [ScoreRequest("v", "s", "p", "r", subject_class=c).is_human for c in ("Human", "cup")] == [True, False]


# --- atomic writes ---------------------------------------------------------------------------------


def test_atomic_write_leaves_the_old_file_when_a_write_fails(tmp_path, monkeypatch):
    from videomaker import storage

    target = tmp_path / "a" / "out.json"
    assert storage.atomic_write(target, "first") == 5 and target.read_text() == "first"

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(storage.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        storage.atomic_write(target, b"second")
    assert target.read_text() == "first" and sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_a_leftover_partial_file_is_recognised(tmp_path):
    from videomaker import storage

    assert storage.is_partial(f"{tmp_path}/data/.part-000001-g1.parquet.0a1b2c3d.partial")
    assert not storage.is_partial(f"{tmp_path}/data/part-000001-g1.parquet")


# --- backend registry ------------------------------------------------------------------------------


class _Tiny:
    def __init__(self, weights: str, *, size: int = 8, device: str = "cpu"):
        self.weights, self.size, self.device = weights, size, device


def test_registry_checks_options_against_the_constructor():
    from metrics.backends.registry import BackendRegistry, BackendSpec

    registry = BackendRegistry({"thing": {"tiny": _Tiny}})
    with pytest.raises(
        ValueError,
        match=r"Invalid cfg\(thing.options\): tiny takes no \['sise'\]. "
        r"Valid options: \['device', 'size', 'weights'\]",
    ):
        registry.check("thing", BackendSpec("tiny", {"weights": "w", "sise": 3}), where="cfg(thing.options)")
    with pytest.raises(ValueError, match=r"tiny needs \['weights'\]"):
        registry.check("thing", BackendSpec("tiny", {}))
    with pytest.raises(ValueError, match=r"Unknown thing 'huge'. Available: \['tiny'\]."):
        registry.get("thing", "huge")
    built = registry.build("thing", BackendSpec("tiny", {"weights": "w"}), device="cuda")
    assert (built.weights, built.size, built.device) == ("w", 8, "cuda")


def test_both_jobs_refuse_a_misspelt_backend_option_while_planning():
    from metrics.backends import BackendSpec, MetricBackendsConfig
    from pipelines.preprocess.backends import check_backends
    from pipelines.preprocess.config import ModelsConfig, PreprocessConfig

    def preprocess(segmenter):
        return PreprocessConfig(input="in", output_dir="out", models=ModelsConfig(segmenter=segmenter))

    with pytest.raises(ValueError, match=r"MetricBackendsConfig\(dino.options\): transformers-dino takes no \['modle'\]"):
        MetricBackendsConfig(dino=BackendSpec("transformers-dino", {"modle": "x"}))
    with pytest.raises(ValueError, match=r"models.segmenter.options\): grabcut takes no \['iters'\]. Valid options: .*'iterations'"):
        check_backends(preprocess(BackendSpec("grabcut", {"iters": 2})))
    with pytest.raises(ValueError, match=r"models.segmenter.options\): sam needs \['checkpoint_path'\]"):
        check_backends(preprocess(BackendSpec("sam")))


def test_every_backend_with_weights_declares_them():
    from metrics.backends import METRIC_BACKENDS
    from pipelines.preprocess.backends import SHP_BACKENDS

    for registry in (METRIC_BACKENDS, SHP_BACKENDS):
        for kind, name, cls in registry.items():
            weight_free = getattr(cls, "weight_free", name == "opencv")
            assert hasattr(cls, "weights") != weight_free, f"{kind} {name}: weights() declared iff it has weights"


# --- image decoding and tables ----------------------------------------------------------------------


def test_decode_image_turns_by_exif_and_puts_transparency_on_white():
    import io

    import numpy as np
    from PIL import Image

    from metrics.io import decode_image

    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: shown turned 90 degrees clockwise
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", exif=exif)
    np.testing.assert_array_equal(decode_image(buffer.getvalue()), np.rot90(pixels, k=-1))

    clear = io.BytesIO()
    Image.new("RGBA", (2, 2), (0, 0, 0, 0)).save(clear, format="PNG")
    assert (decode_image(clear.getvalue()) == 255).all()
    mask = io.BytesIO()
    Image.new("L", (2, 2), 200).save(mask, format="PNG")
    assert decode_image(mask.getvalue(), keep_gray=True).shape == (2, 2)
    with pytest.raises(ValueError, match="not a readable image"):
        decode_image(b"not an image")


def test_render_table_aligns_text_left_and_numbers_right():
    from metrics.tables import render_table

    assert render_table(["set", "N", "note"], [["object", "4", "ok"], ["celebrity", "24", ""]], text_columns=(0, -1)) == (
        "set         N  note\n---------  --  ----\nobject      4  ok\ncelebrity  24"
    )
    with pytest.raises(ValueError, match="row 1 has 1 cells for 2 columns"):
        render_table(["a", "b"], [["x"]])


# --- one home per concept -------------------------------------------------------------------------

_ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
_SOURCES = {
    p.relative_to(_ROOT).as_posix(): p.read_text()
    for folder in ("videomaker", "pipelines", "metrics", "jobs", "bench")
    for p in (_ROOT / folder).rglob("*.py")
}


@pytest.mark.parametrize(
    ("pattern", "home"),
    [
        (r"^def read_manifest\(|\bpa_?csv\.(read|open)_csv\(|\bpa_?json\.(read|open)_json\(", "pipelines/manifests.py"),
        (r"^HUMAN_CLASSES\b", "videomaker/subjects.py"),
        (r"^class BackendSpec\b|^class BackendConfig\b|^class BackendRegistry\b|^class WeightSource\b", "metrics/backends/registry.py"),
        (r"\bFaceAnalysis\(", "metrics/backends/faces.py"),
        (r"\bos\.replace\(|\.tmp-", "videomaker/storage.py"),
        (r"^def flatten_params\(|^JOB_TAG\b", "pipelines/tracking.py"),
        (r"^def (_?render_table|_render)\(", "metrics/tables.py"),
        (r"^def (decode_image|_decode_image)\(", "metrics/io.py"),
        (r"[\(\[]\s*\"ip-adapter\",\s*\"ip-adapter-plus\"", "videomaker/variants.py"),
    ],
)
def test_each_concept_is_defined_in_one_module(pattern, home):
    import re

    found = sorted(path for path, text in _SOURCES.items() if re.search(pattern, text, re.M))
    assert found == [home], f"{pattern!r} should appear in {home} alone, found in {found}"


def test_image_files_are_opened_only_by_the_decoders():
    import re

    openers = sorted(path for path, text in _SOURCES.items() if re.search(r"\bImage\.open\(|\bcv2\.imdecode\(", text))
    # metrics/io.py: images and GIFs; videomaker/references.py: generation's reader (the model core
    # imports nothing from metrics).
    assert set(openers) <= {"metrics/io.py", "videomaker/references.py"}, openers


def test_staging_has_no_code_of_its_own_per_backend():
    for path in ("jobs/weight_sources.py", "jobs/staging.py"):
        for backend in (
            "OpenCLIPEmbedder",
            "DINOEmbedder",
            "RAFTFlow",
            "InsightFace",
            "SAMSegmenter",
            "GroundingDino",
            "SAM_CHECKPOINTS",
            "INSIGHTFACE_PACKS",
            "GROUNDING_DINO_REPOS",
            "PREPROCESS_WEIGHTS",
        ):
            assert backend not in _SOURCES[path], f"{path} names {backend}; let the backend declare its weights"
