"""Typed configs: every shipped config loads, prints with `--print-config` and reads back equal; bad
values are refused with a message naming the dotted key."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from jobs.cli import main
from jobs.config import load_config
from pipelines.configs import describe, to_dict, to_yaml, validate, write_resolved

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "jobs" / "configs"

# The keys each job needs that a shipped config leaves to the command line.
REQUIRED = {
    "preprocess": [],
    "evaluate": ["benchmark=b.csv", "output_dir=o"],
    "score": ["manifest=m.csv", "output_dir=o"],
    "train": ["dataset=d", "storage_path=s"],
}


def job_of(path: Path) -> str:
    """Which job reads a shipped config, by its name."""
    if "preprocess" in path.name:
        return "preprocess"
    if "train" in path.name:
        return "train"
    if path.name.startswith("score"):
        return "score"
    return "evaluate"


def config_class(job: str) -> type:
    if job == "preprocess":
        from pipelines.preprocess.config import PreprocessConfig

        return PreprocessConfig
    if job == "train":
        from pipelines.training.config import TrainConfig

        return TrainConfig
    if job == "score":
        from pipelines.scoring.config import ScoringConfig

        return ScoringConfig
    from pipelines.evaluation.config import EvaluationConfig

    return EvaluationConfig


def print_config(capsys, *argv: str) -> str:
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


@pytest.fixture(autouse=True)
def _no_staged_models(monkeypatch):
    monkeypatch.delenv("VIDEOMAKER_MODELS_DIR", raising=False)


SHIPPED = sorted(CONFIGS.rglob("*.yaml"))


def test_every_job_kind_is_among_the_shipped_configs():
    assert {job_of(p) for p in SHIPPED} == set(REQUIRED) and len(SHIPPED) >= 20


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_a_shipped_config_round_trips_through_print_config(path, capsys, tmp_path):
    job = job_of(path)
    cls = config_class(job)
    overrides = REQUIRED[job]
    expected = load_config(cls, path, overrides)
    sets = [x for o in overrides for x in ("--set", o)]
    printed = print_config(capsys, job, "--config", str(path), *sets, "--print-config")
    assert validate(cls, yaml.safe_load(printed)) == expected
    # Every key is there: the printed file alone gives the same config, and prints the same text.
    again = tmp_path / "printed.yaml"
    again.write_text(printed)
    assert print_config(capsys, job, "--config", str(again), "--print-config") == printed


def _leaf_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        groups = [h for h in typing.get_args(hints[f.name]) or (hints[f.name],) if dataclasses.is_dataclass(h)]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if groups and (default is dataclasses.MISSING or dataclasses.is_dataclass(default)):
            keys += _leaf_keys(groups[0], f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


@pytest.mark.parametrize("job", sorted(REQUIRED))
def test_print_config_keys_documents_every_key(job, capsys):
    cls = config_class(job)
    text = print_config(capsys, job, "--print-config=keys")
    assert text.startswith(cls.__name__)
    lines = text.splitlines()
    for key in _leaf_keys(cls):
        assert any(line.startswith(f"{key}: ") for line in lines), key


def test_keys_carry_their_type_default_and_docstring():
    from pipelines.preprocess.config import PreprocessConfig

    lines = describe(PreprocessConfig).splitlines()
    at = lines.index('clips.resize_policy: "center_crop" | "stretch", default "stretch"')
    assert "the whole frame squeezed to size x size" in lines[at + 1]
    assert "input: str, required" in lines
    assert any(line.startswith("resources.detect.max_size: int, default 1") for line in lines)


def test_preprocess_groups_replace_the_flat_keys():
    from pipelines.preprocess.config import PreprocessConfig

    config = validate(
        PreprocessConfig,
        {
            "input": "in",
            "output_dir": "out",
            "clips": {"size": 256, "span_frames": 16},
            "references": {"mode": "raw_frame", "per_clip": 2},
            "resources": {"detect": {"max_size": 3}},
        },
    )
    assert (config.clips.size, config.clips.span_frames, config.clips.num_frames) == (256, 16, 16)
    assert (config.references.mode, config.references.per_clip, config.resources.detect.max_size) == ("raw_frame", 2, 3)
    with pytest.raises(ValueError, match=r"config\.size: unknown key\. Valid keys here: \[.*'clips'"):
        validate(PreprocessConfig, {"input": "in", "output_dir": "out", "size": 256})


def test_config_hash_follows_the_row_shaping_keys_only():
    from pipelines.preprocess.config import PreprocessConfig

    base = {"input": "in", "output_dir": "out"}

    def digest(**groups) -> str:
        return validate(PreprocessConfig, {**base, **groups}).config_hash()

    plain = digest()
    not_shaping = dict(
        resources={"decode_num_cpus": 1, "detect": {"max_size": 4}},
        output={"sources_per_part": 3},
        tracking={"mlflow_tracking_uri": "sqlite:///x.db"},
        sources={"retry_quarantined": True},
    )
    for group, value in not_shaping.items():
        assert digest(**{group: value}) == plain, group
    assert validate(PreprocessConfig, {"input": "elsewhere", "output_dir": "o2"}).config_hash() == plain
    shaping = dict(
        clips={"size": 256},
        shots={"detector": "none"},
        references={"mode": "raw_frame"},
        sources={"min_side": 32},
        subjects={"head_scale": 2.0},
        models={"segmenter": {"name": "sam"}},
        latents={"encode": True},
    )
    for group, value in shaping.items():
        assert digest(**{group: value}) != plain, group
    assert digest(seed=1) != plain


# -- refusals ---------------------------------------------------------------------------------------


def refusal(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 2
    return capsys.readouterr().err


def test_a_wrong_type_is_refused_naming_the_key(capsys):
    err = refusal(capsys, "preprocess", "--config", str(CONFIGS / "preprocess_demo.yaml"), "--set", "clips.size=large", "--print-config")
    assert "config.clips.size: got 'large' (str), expected int." in err
    # Strict: a quoted number is not an int, a number is not a string.
    err = refusal(capsys, "preprocess", "--config", str(CONFIGS / "preprocess_demo.yaml"), "--set", 'clips.size="64"', "--print-config")
    assert "config.clips.size: got '64' (str)" in err
    err = refusal(capsys, "evaluate", "--set", "benchmark=1", "--set", "output_dir=o", "--print-config")
    assert "config.benchmark: got 1 (int), expected str." in err


def test_an_unknown_key_is_refused_listing_the_valid_ones(capsys):
    err = refusal(capsys, "preprocess", "--config", str(CONFIGS / "preprocess_demo.yaml"), "--set", "clips.sise=64", "--print-config")
    assert "config.clips.sise: unknown key. Valid keys here: ['max_per_source', 'num_frames', 'resize_policy', 'size', " in err


def test_yaml_no_for_a_string_choice_says_to_quote_it(capsys, tmp_path):
    path = tmp_path / "eval.yaml"
    path.write_text("benchmark: b.csv\noutput_dir: o\ndd_frames: no\n")  # YAML 1.1: a bare no is False
    err = refusal(capsys, "evaluate", "--config", str(path), "--print-config")
    assert "config.dd_frames: got the boolean False" in err and 'Quote the word, e.g. dd_frames: "no"' in err

    @dataclass
    class Precision:
        mixed_precision: Literal["no", "fp16", "bf16"] = "no"

    with pytest.raises(ValueError, match='config.mixed_precision: got the boolean False.*mixed_precision: "no"'):
        validate(Precision, yaml.safe_load("mixed_precision: no"))
    assert validate(Precision, yaml.safe_load('mixed_precision: "no"')).mixed_precision == "no"


def test_a_single_value_for_a_list_says_to_write_a_list(capsys):
    err = refusal(capsys, "evaluate", "--set", "benchmark=b.csv", "--set", "output_dir=o", "--set", "seeds=0", "--print-config")
    assert "config.seeds: got 0, expected list[int]: write a list, e.g. [0]." in err
    err = refusal(capsys, "evaluate", "--set", "benchmark=b.csv", "--set", "output_dir=o", "--set", "seeds=[0, x]", "--print-config")
    assert "config.seeds[1]: got 'x' (str), expected int." in err


def test_closed_choices_and_cross_field_checks_name_their_key():
    from pipelines.evaluation.config import EvaluationConfig
    from pipelines.preprocess.config import PreprocessConfig

    with pytest.raises(ValueError, match=r"config.method.kind: got 'dreambooth'; choose one of \"videomaker\" \| "):
        validate(EvaluationConfig, {"benchmark": "b", "output_dir": "o", "method": {"kind": "dreambooth"}})
    with pytest.raises(ValueError, match=r"config.clips: Invalid ClipsConfig\(span_frames=8\): must be >= num_frames"):
        validate(PreprocessConfig, {"input": "i", "output_dir": "o", "clips": {"span_frames": 8}})
    with pytest.raises(ValueError, match=r"config.references: Invalid ReferencesConfig\(per_clip=5\)"):
        validate(PreprocessConfig, {"input": "i", "output_dir": "o", "references": {"per_clip": 5}})
    with pytest.raises(ValueError, match=r"config.input: required"):
        validate(PreprocessConfig, {"output_dir": "o"})
    with pytest.raises(ValueError, match=r"config.method.face.options: got 'x' \(str\), expected mapping"):
        validate(
            EvaluationConfig,
            {"benchmark": "b", "output_dir": "o", "method": {"kind": "ip-adapter-faceid", "face": {"name": "insightface", "options": "x"}}},
        )


# -- printing and writing -----------------------------------------------------------------------------


def test_to_dict_is_json_and_validates_back(tmp_path):
    from pipelines.evaluation.config import EvaluationConfig

    config = load_config(EvaluationConfig, CONFIGS / "baselines" / "ip-adapter-faceid.yaml", REQUIRED["evaluate"])
    plain = to_dict(config)
    assert json.loads(json.dumps(plain)) == plain
    assert validate(EvaluationConfig, plain) == config
    assert yaml.safe_load(to_yaml(config)) == plain


def test_strings_yaml_would_misread_are_quoted_in_print():
    @dataclass
    class Words:
        word: str = "no"
        number_like: str = "1e-4"
        names: list[str] = field(default_factory=lambda: ["on", "off"])

    assert validate(Words, yaml.safe_load(to_yaml(Words()))) == Words()


def test_write_resolved_writes_config_yaml_locally_and_by_uri(tmp_path):
    from pipelines.scoring.config import ScoringConfig

    config = validate(ScoringConfig, {"manifest": "m.csv", "output_dir": str(tmp_path), "face_protocol": "paper"})
    written = write_resolved(config, tmp_path)
    assert Path(written) == tmp_path / "config.yaml"
    assert validate(ScoringConfig, yaml.safe_load((tmp_path / "config.yaml").read_text())) == config
    write_resolved(config, f"file://{tmp_path}/by-uri", name="resolved.yaml")
    assert validate(ScoringConfig, yaml.safe_load((tmp_path / "by-uri" / "resolved.yaml").read_text())) == config


def test_nightly_prints_its_config_without_a_train_run_but_needs_one_to_run(capsys):
    printed = print_config(capsys, "nightly", "--benchmark", "b.csv", "--output-dir", "o", "--print-config")
    assert yaml.safe_load(printed)["benchmark"] == "b.csv"
    common = ("nightly", "--benchmark", "b.csv", "--output-dir", "o")
    err = refusal(capsys, *common, "--baseline", "v1")
    assert "--train-run" in err and "--model" in err  # the two ways to name what is gated
    assert "required: --baseline" in refusal(capsys, *common, "--train-run", "/runs/r")
    assert "Give one of" in refusal(capsys, *common, "--train-run", "/runs/r", "--model", "m")
    assert "--promote" in refusal(capsys, *common, "--train-run", "/runs/r", "--baseline", "v1", "--promote")
    assert "--ema" in refusal(capsys, *common, "--model", "m", "--ema")


def test_flags_override_the_config_in_print(capsys):
    printed = print_config(
        capsys,
        "score",
        "--config",
        str(CONFIGS / "score_paper.yaml"),
        "--manifest",
        "m.csv",
        "--output-dir",
        "o",
        "--face-protocol",
        "corrected",
        "--set",
        "expected_frames=8",
        "--print-config",
    )
    config = yaml.safe_load(printed)
    assert (config["manifest"], config["face_protocol"], config["expected_frames"]) == ("m.csv", "corrected", 8)


def test_checkpoint_registration_is_checked_with_the_config():
    from pipelines.training.config import TrackingConfig

    assert TrackingConfig(mlflow_tracking_uri="sqlite:///m.db", registered_model="vm").register_checkpoints == "every"
    with pytest.raises(ValueError, match="`tracking.register_checkpoints` is 'last'; expected `every` or `final`"):
        TrackingConfig(mlflow_tracking_uri="sqlite:///m.db", registered_model="vm", register_checkpoints="last")
    with pytest.raises(ValueError, match="`tracking.registered_model` needs `tracking.mlflow_tracking_uri`"):
        TrackingConfig(registered_model="vm")
