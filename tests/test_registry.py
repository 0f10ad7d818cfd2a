"""Checkpoints in MLflow's Model Registry, on a real `mlflow server` (sqlite): registered versions load
through `models:/` URIs, and the nightly gate moves `champion` only when it passes."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from jobs.local_services import LocalMlflowServer
from pipelines.registry import parse_model_uri, register_checkpoint

MODEL = "tiny-vm"


@pytest.fixture
def server(tmp_path):
    with LocalMlflowServer(tmp_path / "mlflow") as running:
        yield running


def trained_checkpoint(directory: Path, *, seed: int, scale: float) -> Path:
    """A checkpoint of the tiny preset whose trainable weights moved away from the preset's (so loading it changes the frames)."""
    from videomaker.checkpoint import save_checkpoint, trainable_state_dict
    from videomaker.loading import load_components
    from videomaker.pisa import PISASwitches, install_pisa

    unet = load_components("tiny").unet
    install_pisa(unet, PISASwitches(), num_frames=17)
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in trainable_state_dict(unet, PISASwitches()).values():
            parameter.add_(torch.randn_like(parameter) * scale)
    save_checkpoint(directory, unet, preset="tiny", switches=PISASwitches(), global_step=2, extra={"progress": {"global_step": 2}})
    (directory / "config.yaml").write_text("max_steps: 2\n")
    (directory / "training_state.pt").write_bytes(b"optimizer state: not a version's artifact")
    return directory


def register(tracking_uri: str, directory: Path, run_name: str, step: int = 2):
    """What the training loop's logger does at a checkpoint: a run of the training experiment, then a version."""
    from pipelines.tracking import ensure_experiment

    experiment = ensure_experiment(tracking_uri, "videomaker-train", output_dir=str(directory.parent))
    with mlflow.start_run(experiment_id=experiment, run_name=run_name) as run:
        pass
    version = register_checkpoint(
        tracking_uri,
        MODEL,
        directory=directory,
        run_id=run.info.run_id,
        step=step,
        preset="tiny",
        switches={"ref_in_cross_attention": True},
        run_name=run_name,
        checkpoint_name=f"checkpoint_{step:08d}",
    )
    return version, run.info.run_id


def gif_frames(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)])


def generate(tmp_path: Path, name: str, *extra: str) -> Path:
    from jobs.cli import main

    output = tmp_path / name
    argv = ["generate", "--preset", "tiny", "--reference", "skimage:astronaut", "--prompt", "A person on a beach."]
    assert main([*argv, "--steps", "2", "--output-dir", str(output), *extra]) == 0
    return output / "000_seed0"


def test_model_uris_parse_and_bad_ones_name_the_forms():
    assert parse_model_uri("models:/vm/3") == ("vm", "3", None)
    assert parse_model_uri("models:/vm@champion") == ("vm", None, "champion")
    assert parse_model_uri("models:/vm/latest") == ("vm", "latest", None)
    for bad in ("models:/vm", "models:/vm/x", "models:/@a", "models:/vm/3/ema"):
        with pytest.raises(ValueError, match=r"models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS"):
            parse_model_uri(bad)


def test_a_registered_version_generates_the_frames_of_its_checkpoint_directory(tmp_path, server, capsys, monkeypatch):
    checkpoint = trained_checkpoint(tmp_path / "run" / "checkpoint_00000002", seed=1, scale=0.5)
    version, run_id = register(server.address, checkpoint, "tiny-run")
    client = mlflow.MlflowClient(server.address)
    stored = client.get_model_version(MODEL, version.version)
    assert stored.run_id == run_id and stored.source == f"runs:/{run_id}/checkpoints/checkpoint_00000002"
    assert stored.tags["videomaker.preset"] == "tiny" and stored.tags["videomaker.step"] == "2"
    assert json.loads(stored.tags["videomaker.switches"]) == {"ref_in_cross_attention": True}
    # The weights, their metadata and the config; never the optimizer state.
    files = {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run_id, "checkpoints/checkpoint_00000002")}
    assert files == {"trainable.safetensors", "videomaker.json", "config.yaml"}
    # Registering the same run and step again (a resumed run) makes no second version.
    assert (
        register_checkpoint(
            server.address,
            MODEL,
            directory=checkpoint,
            run_id=run_id,
            step=2,
            preset="tiny",
            switches={},
            run_name="tiny-run",
            checkpoint_name="checkpoint_00000002",
        ).version
        == version.version
    )
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 1
    client.set_registered_model_alias(MODEL, "candidate", version.version)

    from_directory = generate(tmp_path, "dir", "--checkpoint", str(checkpoint))
    by_alias = generate(tmp_path, "alias", "--checkpoint", f"models:/{MODEL}@candidate", "--mlflow-tracking-uri", server.address)
    untrained = generate(tmp_path, "untrained")
    np.testing.assert_array_equal(gif_frames(by_alias.with_suffix(".gif")), gif_frames(from_directory.with_suffix(".gif")))
    assert not np.array_equal(gif_frames(untrained.with_suffix(".gif")), gif_frames(from_directory.with_suffix(".gif")))
    # The sidecar names the pinned version, not the temporary download.
    assert json.loads(by_alias.with_suffix(".json").read_text())["checkpoint"] == f"models:/{MODEL}/{version.version}"

    from jobs.cli import main

    capsys.readouterr()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri sets it in this process
    assert main(["generate", "--reference", "skimage:astronaut", "--prompt", "x", "--checkpoint", f"models:/{MODEL}@nope"]) == 2
    err = capsys.readouterr().err
    assert f"models:/{MODEL}@nope" in err and "--mlflow-tracking-uri" in err  # no registry given
    code = main(
        ["generate", "--reference", "skimage:astronaut", "--prompt", "x"]
        + ["--checkpoint", f"models:/{MODEL}@nope", "--mlflow-tracking-uri", server.address]
    )
    assert code == 2 and "not found in the Model Registry" in capsys.readouterr().err


@pytest.mark.slow
def test_nightly_moves_champion_on_a_pass_and_never_on_a_fail(tmp_path, server, tiny_metric_models, capsys):
    """v1 champion (never evaluated), v2 the same weights as candidate: evaluated both, passes, promoted.
    Then v3, a broken model, as candidate: fails against v2's evaluation, champion stays on v2. Then a
    first night without champion: v4 against --baseline, promoted."""
    import ray
    import yaml

    from jobs.cli import main
    from test_evaluate import degraded_checkpoint, evaluation_config, write_benchmark

    benchmark = write_benchmark(tmp_path / "bench")
    config = evaluation_config(tmp_path, tiny_metric_models)
    values = yaml.safe_load(config.read_text()) | {"mlflow_tracking_uri": server.address, "prompts_per_subject": 1}
    config.write_text(yaml.safe_dump(values))
    client = mlflow.MlflowClient(server.address)
    good = trained_checkpoint(tmp_path / "good" / "checkpoint_00000002", seed=1, scale=0.05)
    v1, _ = register(server.address, good, "run-a")
    v2, _ = register(server.address, good, "run-b")

    def nightly(*extra: str) -> tuple[int, str]:
        capsys.readouterr()
        argv = ["nightly", "--config", str(config), "--benchmark", str(benchmark), "--output-dir", str(tmp_path / "nightly")]
        code = main([*argv, "--model", MODEL, "--no-progress", "--set", "sets=[celebrity]", *extra])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    try:
        # No champion yet: bad input, naming the two ways out, before anything is generated.
        code, out = nightly("--promote")
        assert code == 2 and "no `champion` alias" in out and "--baseline RUN" in out, out[-3000:]
        assert not (tmp_path / "nightly").exists()

        client.set_registered_model_alias(MODEL, "champion", v1.version)
        client.set_registered_model_alias(MODEL, "candidate", v2.version)
        code, out = nightly()  # a pass without --promote moves nothing
        assert code == 0 and "NIGHTLY PASS" in out and "champion now points to it" not in out, out[-3000:]
        assert client.get_model_version_by_alias(MODEL, "champion").version == v1.version
        assert client.get_model_version(MODEL, v2.version).tags["nightly.promoted"] == "false"
        first_baseline = client.get_model_version(MODEL, v2.version).tags["nightly.baseline_run_id"]
        code, out = nightly("--promote")
        assert code == 0, out[-3000:]
        assert "NIGHTLY PASS" in out and "champion now points to it" in out
        assert client.get_model_version_by_alias(MODEL, "champion").version == v2.version
        assert "candidate" not in client.get_registered_model(MODEL).aliases  # consumed by the promotion
        passed = client.get_model_version(MODEL, v2.version).tags
        assert passed["nightly.verdict"] == "pass" and passed["nightly.promoted"] == "true"
        assert passed["nightly.champion_version"] == v1.version
        assert passed["nightly.baseline_run_id"] == first_baseline  # the champion's evaluation, found again, not redone
        champion_eval = client.get_run(passed["nightly.baseline_run_id"])  # the champion, evaluated first
        assert champion_eval.data.tags["videomaker.model_version"] == v1.version
        candidate_run = client.get_run(passed["nightly.run_id"])
        tags = candidate_run.data.tags
        assert (tags["videomaker.model_name"], tags["videomaker.model_version"]) == (MODEL, v2.version)
        assert candidate_run.data.tags["nightly.verdict"] == "pass" and candidate_run.data.tags["nightly.promoted"] == "true"
        assert candidate_run.data.tags["videomaker.training_run_id"] == client.get_model_version(MODEL, v2.version).run_id

        # The candidate alias still names the champion: nothing new to gate, nothing runs.
        code, out = nightly("--promote")
        assert code == 0 and "already is" in out

        broken = degraded_checkpoint(tmp_path / "broken")
        v3, _ = register(server.address, broken, "run-c")
        client.set_registered_model_alias(MODEL, "candidate", v3.version)
        tolerances = [a for m in ("clip_t", "face_sim", "clip_i", "dino_i", "t_cons", "dd") for a in ("--tolerance", f"{m}=0")]
        code, out = nightly("--promote", *tolerances)
        assert code == 3, out[-3000:]
        assert "NIGHTLY FAIL" in out
        assert client.get_model_version_by_alias(MODEL, "champion").version == v2.version  # not moved
        failed = client.get_model_version(MODEL, v3.version).tags
        assert failed["nightly.verdict"] == "fail" and failed["nightly.promoted"] == "false" and failed["nightly.failed_metrics"]
        # gated against v2's evaluation (the nightly run above), not a re-evaluation
        assert failed["nightly.baseline_run_id"] == candidate_run.info.run_id

        # A first night (no champion): gated against --baseline, and --promote sets champion.
        client.delete_registered_model_alias(MODEL, "champion")
        v4, _ = register(server.address, good, "run-d")
        client.set_registered_model_alias(MODEL, "candidate", v4.version)
        code, out = nightly("--promote", "--baseline", candidate_run.info.run_id)
        assert code == 0 and "NIGHTLY PASS" in out, out[-3000:]
        assert client.get_model_version_by_alias(MODEL, "champion").version == v4.version
        first = client.get_model_version(MODEL, v4.version).tags
        assert first["nightly.baseline_run_id"] == candidate_run.info.run_id and first["nightly.champion_version"] == ""

        # compare takes versions by URI (an alias too): each one's newest evaluation
        assert main(["compare", f"models:/{MODEL}@champion", f"models:/{MODEL}/{v3.version}", "--mlflow-tracking-uri", server.address,
                     "--output-dir", str(tmp_path / "cmp"), "--bootstrap", "200"]) == 0  # fmt: skip
        report = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
        assert list(report["deltas"]) == [f"nightly-{MODEL}-v{v3.version}"]
    finally:
        ray.shutdown()
