"""The `videomaker` command as a user runs it: a real subprocess writing real mp4 and GIF files."""

import json
import subprocess
import sys

import av
import pytest
from PIL import Image


def videomaker(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["generate"],
        ["presets"],
        ["preprocess"],
        ["synth-corpus"],
        ["score"],
        ["train"],
        ["evaluate"],
        ["compare"],
        ["nightly"],
        ["models"],
        ["models", "verify"],
        ["demo"],
    ],
)
def test_every_command_has_help(command):
    result = videomaker(*command, "--help")
    assert result.returncode == 0 and "usage: videomaker" in result.stdout
    if command and command[0] in ("preprocess", "score", "train", "evaluate", "nightly"):  # the jobs that take a config
        assert "--print-config" in result.stdout


def test_python_m_prints_the_resolved_config_and_its_keys():
    import yaml

    command = [sys.executable, "-m", "jobs.preprocess", "--config", "jobs/configs/preprocess_demo.yaml", "--set", "clips.size=64"]
    printed = subprocess.run([*command, "--print-config"], capture_output=True, text=True, timeout=600)
    assert printed.returncode == 0, printed.stderr
    config = yaml.safe_load(printed.stdout)
    assert config["clips"]["size"] == 64 and config["models"]["segmenter"] == {"name": "grabcut", "options": {}}
    keys = subprocess.run([*command, "--print-config=keys"], capture_output=True, text=True, timeout=600)
    assert keys.returncode == 0 and "clips.size: int, default 512" in keys.stdout


@pytest.mark.slow
def test_generate_writes_mp4_gif_and_sidecar(tmp_path):
    result = videomaker(
        "generate",
        "--preset",
        "tiny",
        "--reference",
        "skimage:astronaut",
        "--prompt",
        "A person wearing a blue hoodie.",
        "--prompt",
        "A person riding a horse.",
        "--seed",
        "7",
        "--seed",
        "8",
        "--steps",
        "4",
        "--output-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    for index, seed in enumerate([7, 8]):
        stem = tmp_path / f"{index:03d}_seed{seed}"
        with av.open(str(stem.with_suffix(".mp4"))) as container:
            stream = container.streams.video[0]
            frames = list(container.decode(stream))
            assert len(frames) == 16 and (frames[0].width, frames[0].height) == (64, 64)
            assert stream.average_rate == 8
        with Image.open(stem.with_suffix(".gif")) as gif:
            assert gif.n_frames == 16 and gif.size == (64, 64)
        sidecar = json.loads(stem.with_suffix(".json").read_text())
        assert sidecar["seed"] == seed and sidecar["preset"] == "tiny" and sidecar["num_inference_steps"] == 4


def test_bad_reference_is_a_clear_error(tmp_path, capsys):
    from jobs.cli import main

    assert main(["generate", "--reference", str(tmp_path / "nope.png"), "--prompt", "x"]) == 2
    stderr = capsys.readouterr().err
    assert "--reference" in stderr and "no such file" in stderr
