"""bench/gpu_step.py: refuses to run without a GPU before building anything, and its whole code path runs on a CPU (--smoke)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "bench/gpu_step.py"
NO_GPU = "bench/gpu_step.py needs a CUDA GPU (torch.cuda.is_available() is False): run it on a GPU machine; see --help"


def run_script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def test_help_says_it_needs_a_gpu_and_that_smoke_is_for_tests():
    result = run_script("--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Needs a CUDA GPU" in result.stdout
    assert "for tests only" in result.stdout
    for option in ("--repeats", "--steps", "--out", "--smoke"):
        assert option in result.stdout


def test_without_a_gpu_it_exits_2_before_building_anything(tmp_path):
    out = tmp_path / "figures.json"
    result = run_script("--out", str(out), env=os.environ | {"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [NO_GPU]
    # Nothing printed (no device line, no "[1/4] building" progress) and nothing written: it failed first.
    assert result.stdout == ""
    assert not out.exists()


def test_smoke_run_covers_every_attention_and_writes_the_figures(tmp_path):
    out = tmp_path / "figures.json"
    result = run_script("--smoke", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.read_text())

    attentions = ["stock", "pisa-paired", "pisa-merged"]
    assert [(row["attention"], row["checkpointing"]) for row in record["rows"]] == [(a, c) for a in attentions for c in (False, True)]
    table_rows = [line.split()[:2] for line in record["table"].splitlines() if line.split()[:1] and line.split()[0] in attentions]
    assert table_rows == [[a, c] for a in attentions for c in ("off", "on")]
    assert record["table"] in result.stdout

    for row in record["rows"]:
        assert row["train_error"] is None and row["train_s_per_step"] > 0 and row["train_peak_gib"] is None  # no CUDA peak on a CPU
        assert len(row["train_s"]) == record["repeats"] == 1
        if row["attention"] == "stock":
            assert row["train_vs_stock"] == 1.0
        if not row["checkpointing"]:
            assert row["infer_error"] is None and row["infer_s_per_video"] > 0
        else:
            assert "infer_s_per_video" not in row
    assert record["implementations"]["stock"].startswith("stock: AttnProcessor2_0")
    assert record["implementations"]["pisa-paired"].startswith("paired:")
    assert {key: record[key] for key in ("preset", "frames", "latent", "steps", "smoke")} == {
        "preset": "tiny",
        "frames": 17,
        "latent": 8,
        "steps": 2,
        "smoke": True,
    }
    assert {"device", "torch", "diffusers", "transformers", "wall_s"} <= record.keys()
    assert "total wall time" in result.stdout

    assert record["implementations"]["pisa-merged"].startswith("merged:")
    exactness = record["exactness"]
    assert exactness["layer"].endswith(".attn1") and exactness["layer_tokens"] == 64
    assert exactness["layer_max_abs_diff"] < 1e-5 and exactness["unet_max_abs_diff"] < 1e-4
    for what in ("out", "grad"):  # bf16 autocast really rounds, and merged stays within 2x of paired's error
        assert 0 < exactness[f"bf16_merged_{what}_error"] <= 2 * exactness[f"bf16_paired_{what}_error"]
    assert "WARNING" not in result.stdout
