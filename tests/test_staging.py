"""Model staging for offline clusters: real files copied, checksummed, verified and resolved; no network."""

import argparse
import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import yaml

from jobs import models
from jobs.staging import StagingError, resolve_weight, stage, verify
from jobs.weight_sources import WeightSource, weights_named_by, with_source_overrides

ROOT = Path(__file__).resolve().parents[1]


def digest(path: Path) -> tuple[int, str]:
    """Size and SHA-256 computed here, independently of the staging code."""
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


@pytest.fixture
def sources(tmp_path):
    """A nested weight directory and a single weight file, as on a shared filesystem."""
    pack = tmp_path / "src" / "pack"
    (pack / "sub").mkdir(parents=True)
    (pack / "config.json").write_text('{"hidden_size": 8}')
    (pack / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 40)
    single = tmp_path / "src" / "model.pth"
    single.write_bytes(b"\x00\x07" * 5000)
    return [WeightSource("pack", "local", str(pack)), WeightSource("single", "local", str(single))]


@pytest.fixture
def staged(tmp_path, sources):
    directory = tmp_path / "models"
    stage(sources, directory, progress=False)
    return directory


def run_verify(directory, capsys) -> tuple[int, str]:
    code = models.main(["verify", str(directory), "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_stage_copies_local_sources_and_records_sizes_and_sha256(tmp_path, sources):
    manifest = stage(sources, tmp_path / "models", progress=False)

    record = json.loads((tmp_path / "models" / "MANIFEST.json").read_text())
    assert record["format_version"] == 1 and record["created"].startswith("20")
    src = tmp_path / "src"
    files = {w["name"]: {f["path"]: (f["size"], f["sha256"]) for f in w["files"]} for w in record["weights"]}
    assert files == {
        "pack": {"config.json": digest(src / "pack" / "config.json"), "sub/weights.bin": digest(src / "pack" / "sub" / "weights.bin")},
        "single": {"model.pth": digest(src / "model.pth")},
    }
    assert {w["name"]: (w["kind"], w["source"], w["path"]) for w in record["weights"]} == {
        "pack": ("local", str(src / "pack"), "pack"),
        "single": ("local", str(src / "model.pth"), "single/model.pth"),
    }
    assert (tmp_path / "models" / "pack" / "sub" / "weights.bin").read_bytes() == (src / "pack" / "sub" / "weights.bin").read_bytes()
    assert [w.name for w in manifest.weights] == ["pack", "single"]
    assert not list((tmp_path / "models").glob(".*"))  # no partial folders left


def test_restaging_skips_unchanged_weights_and_refetches_changed_ones(tmp_path, sources, staged):
    inode = {name: (staged / name / file).stat().st_ino for name, file in [("pack", "config.json"), ("single", "model.pth")]}
    stage(sources, staged, progress=False)
    assert {name: (staged / name / file).stat().st_ino for name, file in [("pack", "config.json"), ("single", "model.pth")]} == inode

    (tmp_path / "src" / "model.pth").write_bytes(b"retrained")
    manifest = stage(sources, staged, progress=False)
    assert (staged / "pack" / "config.json").stat().st_ino == inode["pack"]
    assert (staged / "single" / "model.pth").stat().st_ino != inode["single"]
    single = next(w for w in manifest.weights if w.name == "single")
    assert (single.files[0].size, single.files[0].sha256) == digest(tmp_path / "src" / "model.pth")


def test_verify_passes_on_a_fresh_directory(staged, capsys):
    code, output = run_verify(staged, capsys)
    assert code == 0
    assert "OK: 3 files of 2 weights checked" in output
    assert verify(staged).ok


def test_verify_reports_a_deleted_file(staged, capsys):
    (staged / "pack" / "sub" / "weights.bin").unlink()
    code, output = run_verify(staged, capsys)
    assert code == 1
    assert "missing: pack/sub/weights.bin (expected 10240 bytes)" in output and "videomaker models stage" in output
    assert "FAILED with 1 problem:" in output


def test_verify_reports_a_flipped_byte_by_its_checksums(tmp_path, staged, capsys):
    path = staged / "single" / "model.pth"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    code, output = run_verify(staged, capsys)
    assert code == 1
    expected, actual = digest(tmp_path / "src" / "model.pth")[1], hashlib.sha256(data).hexdigest()
    assert f"checksum mismatch: single/model.pth has sha256 {actual}, expected {expected}" in output


def test_verify_reports_a_truncated_file_by_its_size(staged, capsys):
    path = staged / "pack" / "sub" / "weights.bin"
    path.write_bytes(path.read_bytes()[:4000])
    code, output = run_verify(staged, capsys)
    assert code == 1
    assert "size mismatch: pack/sub/weights.bin is 4000 bytes, expected 10240" in output


def test_verify_warns_about_files_the_manifest_does_not_name(staged, capsys):
    (staged / "pack" / "notes.txt").write_text("not a weight")
    code, output = run_verify(staged, capsys)
    assert code == 0
    assert (
        "warning: not in the manifest: pack/notes.txt" in output and "OK: 3 files of 2 weights checked" in output and "1 warning" in output
    )


def test_verify_without_a_readable_manifest_is_a_clear_error(staged, capsys):
    (staged / "MANIFEST.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable staging manifest"):
        verify(staged)
    (staged / "MANIFEST.json").unlink()
    code, output = run_verify(staged, capsys)
    assert code == 2
    assert "MANIFEST.json' not found" in output and "is not a staged models directory" in output
    assert "videomaker models stage" in output


def test_registry_names_every_weight_the_repo_configs_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no staged copies under models/ or ~/.insightface here
    monkeypatch.setenv("HOME", str(tmp_path))
    configs = [yaml.safe_load(path.read_text()) for path in sorted((ROOT / "jobs" / "configs").glob("*.yaml"))]
    configs.append(json.loads((ROOT / "videomaker" / "presets" / "paper.json").read_text()))

    weights = {w.name: w for w in weights_named_by(configs)}

    assert set(weights) == {"diffusion-backbone", "motion-adapter", "clip", "dino", "insightface", "sam", "raft", "detector"}
    described = {name: (w.kind, w.source) for name, w in weights.items()}
    assert described["diffusion-backbone"] == ("hf-repo", "SG161222/Realistic_Vision_V5.1_noVAE")
    assert described["motion-adapter"] == ("hf-repo", "guoyww/animatediff-motion-adapter-v1-5-3")
    assert described["clip"] == ("open_clip", "ViT-B-32:openai")
    assert described["dino"] == ("hf-repo", "facebook/dino-vits16")
    assert described["raft"] == ("torchvision", "C_T_V1")
    assert described["sam"] == ("url", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth")
    assert described["detector"] == ("hf-repo", "IDEA-Research/grounding-dino-tiny")
    assert weights["insightface"].kind == "url" and weights["insightface"].source.endswith("/buffalo_l.zip")
    # The paths the configs point at are how jobs will ask for the staged copies.
    assert set(weights["insightface"].aliases) == {"~/.insightface/models/buffalo_l", "models/buffalo_l"}
    assert weights["sam"].aliases == ("models/sam_vit_h_4b8939.pth",)
    assert "unet/*" in weights["diffusion-backbone"].allow_patterns


def test_registry_applies_config_defaults_and_prefers_present_copies(tmp_path):
    defaults = {w.name: (w.kind, w.source) for w in weights_named_by([{"scorers": {"num_gpus": 1}}])}
    assert defaults["dino"] == ("hf-repo", "facebook/dino-vits16") and defaults["raft"] == ("torchvision", "C_T_V1")
    assert set(defaults) == {"clip", "dino", "insightface", "raft"}

    weight_free = weights_named_by([{"backends": {"face": None, "flow": {"name": "opencv"}}}, {"preset": "tiny"}])
    assert [w.name for w in weight_free] == ["clip", "dino"]

    copy = tmp_path / "buffalo_l"
    copy.mkdir()
    present = weights_named_by([{"models": {"face_detector": {"name": "insightface", "options": {"model_dir": str(copy)}}}}])
    assert [(w.name, w.kind, w.source) for w in present] == [("insightface", "local", str(copy))]


@pytest.mark.slow  # imports diffusers for the baselines' DEFAULT_SOURCES (about 20 s)
def test_registry_names_the_ip_adapter_files_of_the_baselines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    faceid = {"kind": "ip-adapter-faceid", "face": {"name": "insightface", "options": {"model_dir": "models/buffalo_l"}}}
    configs = [{"method": {"kind": "ip-adapter", "preset": "paper"}}, {"method": {"kind": "ip-adapter-plus"}}, {"method": faceid}]

    weights = {w.name: w for w in weights_named_by(configs)}

    # One folder per hub repo, with every file any variant loads from it.
    assert (weights["ip-adapter"].source, weights["ip-adapter"].allow_patterns) == (
        "h94/IP-Adapter",
        ("models/ip-adapter_sd15.safetensors", "models/image_encoder/*", "models/ip-adapter-plus_sd15.safetensors"),
    )
    assert (weights["ip-adapter-faceid"].source, weights["ip-adapter-faceid"].allow_patterns) == (
        "h94/IP-Adapter-FaceID",
        ("ip-adapter-faceid_sd15.bin",),
    )
    assert "ip-adapter-plus" not in weights and "models/buffalo_l" in weights["insightface"].aliases
    assert weights["diffusion-backbone"].source == "SG161222/Realistic_Vision_V5.1_noVAE"


def test_resolve_weight_maps_sources_to_staged_copies(tmp_path, sources, staged):
    assert resolve_weight(str(tmp_path / "src" / "model.pth"), staged) == str(staged / "single" / "model.pth")
    assert resolve_weight(str(tmp_path / "src" / "pack"), str(staged)) == str(staged / "pack")
    assert resolve_weight("facebook/dino-vits16", None) == "facebook/dino-vits16"
    with pytest.raises(ValueError, match=r"`source` 'facebook/dino-vits16' is not staged in '.*models'"):
        resolve_weight("facebook/dino-vits16", staged)


def test_a_hand_fetched_copy_stands_for_the_hub_id_configs_name(tmp_path, sources):
    hub = weights_named_by([{"backends": {"face": None, "flow": {"name": "opencv"}}}])
    staged = with_source_overrides(hub, {"dino": str(tmp_path / "src" / "pack"), "clip": str(tmp_path / "src" / "model.pth")})
    stage(staged, tmp_path / "models", progress=False)
    assert resolve_weight("facebook/dino-vits16", tmp_path / "models") == str(tmp_path / "models" / "dino")
    assert resolve_weight("ViT-B-32:openai", tmp_path / "models") == str(tmp_path / "models" / "clip" / "model.pth")


def test_url_sources_are_downloaded_and_zips_unpacked(tmp_path):
    pack = tmp_path / "buffalo_l.zip"
    with zipfile.ZipFile(pack, "w") as archive:  # insightface's layout: the models at the zip's root
        archive.writestr("det_10g.onnx", b"detector" * 100)
        archive.writestr("w600k_r50.onnx", b"recognition" * 100)
    checkpoint = tmp_path / "sam_vit_b_01ec64.pth"
    checkpoint.write_bytes(b"sam" * 100)
    urls = [WeightSource("insightface", "url", pack.as_uri()), WeightSource("sam", "url", checkpoint.as_uri())]

    manifest = stage(urls, tmp_path / "models", progress=False)

    weights = {w.name: w for w in manifest.weights}
    assert weights["insightface"].path == "insightface" and weights["sam"].path == "sam/sam_vit_b_01ec64.pth"
    assert [(f.path, f.size) for f in weights["insightface"].files] == [("det_10g.onnx", 800), ("w600k_r50.onnx", 1100)]
    assert resolve_weight(pack.as_uri(), tmp_path / "models") == str(tmp_path / "models" / "insightface")
    assert verify(tmp_path / "models").ok and not verify(tmp_path / "models").warnings


def test_download_failures_name_the_weight_and_say_how_to_stage_by_hand(tmp_path, sources):
    broken = [
        WeightSource("dino", "hf-repo", "facebook/dino-vits16"),  # HF_HUB_OFFLINE=1 (conftest)
        WeightSource("sam", "url", "http://127.0.0.1:9/nothing/sam_vit_h_4b8939.pth"),
    ]
    with pytest.raises(StagingError) as raised:
        stage([sources[1], *broken], tmp_path / "models", progress=False, timeout_s=2)
    message = str(raised.value)
    assert "Could not stage 'dino' from hf-repo 'facebook/dino-vits16'" in message
    assert "`hf download facebook/dino-vits16 --local-dir COPY`" in message and "--source dino=COPY" in message
    assert "Could not stage 'sam' from url 'http://127.0.0.1:9/nothing/sam_vit_h_4b8939.pth'" in message
    assert "--source sam=COPY" in message
    # The weight that could be staged is in the manifest and checks out; nothing half-fetched is left.
    assert [w["name"] for w in json.loads((tmp_path / "models" / "MANIFEST.json").read_text())["weights"]] == ["single"]
    assert verify(tmp_path / "models").ok and not list((tmp_path / "models").glob(".*"))


def test_cli_stages_the_weights_a_config_names(tmp_path, capsys):
    checkpoint = tmp_path / "sam_vit_b_01ec64.pth"
    checkpoint.write_bytes(b"sam" * 1000)
    config = tmp_path / "preprocess.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "models": {
                    "segmenter": {"name": "sam", "options": {"checkpoint_path": str(checkpoint)}},
                    "face_detector": {"name": "cascade"},
                }
            }
        )
    )
    assert models.main(["stage", str(tmp_path / "models"), "--config", str(config), "--list"]) == 0
    assert f"sam                  local        {checkpoint}" in capsys.readouterr().out
    assert models.main(["stage", str(tmp_path / "models"), "--config", str(config), "--no-progress"]) == 0
    assert "staged 1 weight (1 file)" in capsys.readouterr().out
    assert resolve_weight(str(checkpoint), tmp_path / "models") == str(tmp_path / "models" / "sam" / checkpoint.name)
    assert models.main(["stage", str(tmp_path / "models"), "--source", "nonsense"]) == 2
    assert "must be NAME=SOURCE" in capsys.readouterr().err


def test_models_is_a_videomaker_subcommand_with_help(capsys):
    parser = argparse.ArgumentParser(prog="videomaker")
    models.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", "verify", "/shared/models"])
    assert (args.action, args.directory, args.run) == ("verify", "/shared/models", models.run)
    for argv in (["--help"], ["stage", "--help"], ["verify", "--help"]):
        with pytest.raises(SystemExit) as exited:
            models.main(argv)
        assert exited.value.code == 0
    assert "videomaker models stage /shared/models" in capsys.readouterr().out


def test_jobs_read_the_weights_their_config_names_from_the_staged_copies(tmp_path, monkeypatch):
    """eval_paper.yaml names hub ids, a torchvision tag and an open_clip tag; staged copies stand for them."""
    from jobs.config import load_config
    from pipelines.evaluation.config import EvaluationConfig

    src = tmp_path / "src"
    for folder in ("clip", "dino", "buffalo_l"):
        (src / folder).mkdir(parents=True)
        (src / folder / "weights.bin").write_bytes(folder.encode() * 100)
    (src / "raft.pth").write_bytes(b"raft" * 100)
    stage(
        [
            WeightSource("clip", "local", str(src / "clip"), aliases=("ViT-B-32:openai",)),
            WeightSource("dino", "local", str(src / "dino"), aliases=("facebook/dino-vits16",)),
            WeightSource("insightface", "local", str(src / "buffalo_l"), aliases=("~/.insightface/models/buffalo_l",)),
            WeightSource("raft", "local", str(src / "raft.pth"), aliases=("C_T_V1",)),
        ],
        tmp_path / "models",
        progress=False,
    )
    models_dir = tmp_path / "models"

    plain = load_config(EvaluationConfig, ROOT / "jobs/configs/eval_paper.yaml", ["benchmark=b.csv", "output_dir=o"])
    config = load_config(
        EvaluationConfig, ROOT / "jobs/configs/eval_paper.yaml", ["benchmark=b.csv", "output_dir=o"], models_dir=models_dir
    )
    backends = config.backends
    # A folder loads as open_clip's local-dir; OpenAI's weights keep saying they need QuickGELU.
    assert backends.clip.options == {"model": f"local-dir:{models_dir / 'clip'}", "quick_gelu": True}
    assert backends.dino.options["model"] == str(models_dir / "dino")
    assert backends.face.options == {**plain.backends.face.options, "model_dir": str(models_dir / "insightface")}
    assert backends.flow.options["weights"] == str(models_dir / "raft" / "raft.pth")
    assert backends.flow.options["num_flow_updates"] == 20 and config.method.preset == "paper"  # the rest unchanged
    assert plain.backends.dino.options["model"] == "facebook/dino-vits16"  # without models_dir nothing moves

    # A job finds the staged directory through $VIDEOMAKER_MODELS_DIR when --models-dir is not given.
    import argparse

    from jobs.config import add_models_dir_argument

    monkeypatch.setenv("VIDEOMAKER_MODELS_DIR", str(models_dir))
    parser = argparse.ArgumentParser()
    add_models_dir_argument(parser)
    assert parser.parse_args([]).models_dir == str(models_dir)


def test_released_checkpoints_and_the_backbone_scheduler_are_named_for_staging(tmp_path, capsys):
    from jobs.config import load_config
    from pipelines.evaluation.config import EvaluationConfig

    uri = "hf:SugerWu/VideoMaker/object_pytorch_model.bin"
    named = {w.name: w for w in weights_named_by([{"method": {"kind": "videomaker", "preset": "paper", "checkpoint": uri}}])}
    assert named["videomaker-object"] == WeightSource("videomaker-object", "hf-file", uri.removeprefix("hf:"), aliases=(uri,))
    assert "scheduler/*" in named["diffusion-backbone"].allow_patterns  # the sampler reads the stored scheduler config

    assert (
        models.main(["stage", str(tmp_path / "models"), "--config", str(ROOT / "jobs/configs/eval_demo.yaml"), "--released", "--list"]) == 0
    )
    listed = capsys.readouterr().out
    assert "videomaker-human     hf-file      SugerWu/VideoMaker/human_pytorch_model.bin" in listed
    assert "videomaker-object    hf-file      SugerWu/VideoMaker/object_pytorch_model.bin" in listed

    # Not in the (empty, offline) hub cache: the failure says how to stage it by hand.
    with pytest.raises(StagingError) as raised:
        stage([named["videomaker-object"]], tmp_path / "models", progress=False)
    assert "`hf download SugerWu/VideoMaker object_pytorch_model.bin --local-dir COPY`" in str(raised.value)
    assert "--source videomaker-object=COPY" in str(raised.value)

    # A copy fetched by hand, staged with --source, stands for the hf: URI a config names.
    copy = tmp_path / "copy" / "object_pytorch_model.bin"
    copy.parent.mkdir()
    copy.write_bytes(b"weights" * 100)
    stage(with_source_overrides([named["videomaker-object"]], {"videomaker-object": str(copy.parent)}), tmp_path / "models", progress=False)
    config = load_config(
        EvaluationConfig, None, ["benchmark=b.csv", "output_dir=o", f"method.checkpoint={uri}"], models_dir=tmp_path / "models"
    )
    assert config.method.checkpoint == str(tmp_path / "models" / "videomaker-object")
    assert with_source_overrides([], {"x": uri})[0].kind == "hf-file"
