"""OpenS2V-Eval as a benchmark: manifests, `<videoid>.mp4` naming, the score merge, TotalScore, published rows.

Every fixture is written here in OpenS2V's formats (per-metric JSON files, *_Eval.json manifests).
Expected totals come from a plain re-computation below, written from OpenS2V's merge scripts
(weights, clamps, normalisation), independently of metrics/opens2v.py.
"""

import json
import math

import numpy as np
import pytest
from PIL import Image

from metrics import opens2v
from metrics.published import opens2v_published_rows
from pipelines.evaluation.benchmarks import BenchmarkManifestError
from pipelines.evaluation.opens2v import (
    export_opens2v_videos,
    opens2v_items,
    opens2v_video_name,
    read_opens2v_manifest,
    write_opens2v_import_manifest,
)

# --- the merge, re-computed plainly ------------------------------------------------------------

# The published weights, typed from the two merge scripts.
V10_HUMAN = {"aes": 0.15, "motion": 0.15, "facesim": 0.25, "gme": 0.15, "natural": 0.30}
V10_OTHER = {"aes": 0.12, "motion": 0.12, "facesim": 0.20, "gme": 0.12, "nexus": 0.20, "natural": 0.24}
V11_HUMAN = {"aes": 0.18, "smooth": 0.09, "amp": 0.03, "facesim": 0.25, "gme": 0.15, "natural": 0.30}
V11_OTHER = {"aes": 0.16, "smooth": 0.06, "amp": 0.02, "facesim": 0.20, "gme": 0.12, "nexus": 0.20, "natural": 0.24}
JSON_KEY = {
    "aes": "aes_score",
    "motion": "motion_score",
    "smooth": "motion_smoothness",
    "amp": "motion_amplitude",
    "facesim": "facesim_cur",
    "gme": "gme_score",
    "nexus": "nexus_score",
    "natural": "natural_score",
}


def mean(values):
    return sum(values) / len(values) if values else 0.0


def recompute(folder, domain, version):
    """OpenS2V's merge by hand from the files in `folder`: clamp per video, average counted videos, normalise, weigh."""
    files = {path.stem: json.loads(path.read_text()) for path in folder.glob("*.json")}
    videos = set().union(*(content.keys() for content in files.values()))
    lists = {name: [] for name in JSON_KEY}
    for video in sorted(videos):

        def inner(stem, key, video=video):
            entry = files.get(stem, {}).get(video)
            return entry.get(key) if isinstance(entry, dict) else None

        aes = inner("aesthetic_score", "aes_score")
        if aes is not None:
            lists["aes"].append(min(max(aes, 4.0), 7.0))
        motion_file = "motionscore" if version == "v1.0" else "motion_amplitude"
        amplitude = inner(motion_file, "motion_fb")
        if amplitude is not None:
            lists["motion" if version == "v1.0" else "amp"].append(min(abs(amplitude), 1.0))
        smooth = inner("motion_smoothness", "motion_smoothness")
        bare = files.get("motion_smoothness", {}).get(video)
        if isinstance(bare, int | float):  # v1.1 keeps a motion entry that is a bare number, and counts it
            smooth = bare
        if version == "v1.1" and smooth is not None:
            lists["smooth"].append(min(abs(smooth), 1.0))
        face = inner("facesim", "cur_score")
        if face is not None:
            lists["facesim"].append(min(face, 1.0))
        gme = inner("gmescore", "gme_score")
        if gme is not None:
            lists["gme"].append(min(gme, 1.0))
        nexus = inner("nexusscore", "nexus_score")
        if nexus is not None and nexus != 0:
            lists["nexus"].append(min(nexus, 0.05))
        runs = [float(files[f"naturalscore_{i}"][video]) for i in (1, 2, 3) if files.get(f"naturalscore_{i}", {}).get(video) is not None]
        if runs:
            lists["natural"].append(min(max(sum(runs) / len(runs), 1.0), 5.0))
    normalised = {
        "aes": (mean(lists["aes"]) - 4.0) / 3.0,
        "motion": mean(lists["motion"]),
        "smooth": mean(lists["smooth"]),
        "amp": mean(lists["amp"]),
        "facesim": mean(lists["facesim"]),
        "gme": mean(lists["gme"]),
        "nexus": mean(lists["nexus"]) / 0.05,
        "natural": (mean(lists["natural"]) - 1.0) / 4.0,
    }
    weights = {("v1.0", True): V10_HUMAN, ("v1.0", False): V10_OTHER, ("v1.1", True): V11_HUMAN, ("v1.1", False): V11_OTHER}[
        (version, domain == "Human-Domain")
    ]
    result = {"total_score": sum(weight * normalised[name] for name, weight in weights.items())}
    result.update({JSON_KEY[name]: normalised[name] for name in weights})
    return result


def write_json(path, content):
    path.write_text(json.dumps(content, indent=4))


def score_folder(tmp_path, version):
    """Per-metric files as OpenS2V's get_*.py write them, with every clamp and rule exercised."""
    folder = tmp_path / f"scores_{version}"
    folder.mkdir()
    # aes: above 7 clamps to 7, below 4 to 4; video d has none.
    write_json(folder / "aesthetic_score.json", {"a": {"aes_score": 7.8}, "b": {"aes_score": 3.1}, "c": {"aes_score": 5.25}})
    motion = {"a": {"motion_fb": -0.4, "motion_lk": 3.0}, "b": {"motion_fb": 1.7, "motion_lk": 9.0}, "c": {"motion_fb": 0.05}}
    if version == "v1.0":
        write_json(folder / "motionscore.json", motion)
    else:
        write_json(folder / "motion_amplitude.json", motion)
        write_json(folder / "motion_smoothness.json", {"a": {"motion_smoothness": 0.9}, "b": {"motion_smoothness": 1.0}, "d": 0.5})
    # FaceSim: above 1 clamps, a negative one counts as it is (no lower clamp); c has no face entry.
    write_json(folder / "facesim.json", {"a": {"cur_score": 1.2, "arc_score": 0.9}, "b": {"cur_score": -0.1, "arc_score": 0.0}})
    write_json(folder / "gmescore.json", {"a": {"gme_score": 0.61}, "b": {"gme_score": 1.3}, "c": {"gme_score": 0.4}, "d": {"other": 1}})
    # Nexus: a 0 is left out, above 0.05 clamps.
    write_json(folder / "nexusscore.json", {"a": {"nexus_score": 0.0}, "b": {"nexus_score": 0.08}, "c": {"nexus_score": 0.02}})
    # NaturalScore: replies as text, a run may lack a video, a mean above 5 clamps, below 1 too.
    write_json(folder / "naturalscore_1.json", {"a": "4", "b": "6", "c": "1", "d": "3"})
    write_json(folder / "naturalscore_2.json", {"a": "3", "b": "7", "c": "0"})
    write_json(folder / "naturalscore_3.json", {"a": "5", "c": "0.5"})
    write_json(folder / "notes.json", {"a": {"anything": 1}})  # a file the merge does not know
    return folder


@pytest.mark.parametrize("version", ["v1.0", "v1.1"])
@pytest.mark.parametrize("domain", ["Human-Domain", "Open-Domain", "Single-Domain"])
def test_total_and_every_sub_score_equal_the_plain_recomputation(tmp_path, version, domain):
    folder = score_folder(tmp_path, version)
    result = opens2v.merge_result_folder(folder, domain=domain, version=version)
    expected = recompute(folder, domain, version)
    assert list(result) == list(expected)  # the result JSON's keys, in its order
    for key in expected:
        assert result[key] == pytest.approx(expected[key], abs=1e-12), key
    # The fixture reaches the clamps: the total is not a coincidence of unclamped values.
    assert result["aes_score"] == pytest.approx(((7.0 + 4.0 + 5.25) / 3 - 4) / 3)
    assert result["natural_score"] == pytest.approx(((4.0 + 5.0 + 1.0 + 3.0) / 4 - 1) / 4)
    assert ("nexus_score" in result) == (domain != "Human-Domain")


def test_absent_metrics_average_to_zero_before_the_normalisation(tmp_path):
    folder = tmp_path / "only_faces"
    folder.mkdir()
    write_json(folder / "facesim.json", {"a": {"cur_score": 0.5}})
    result = opens2v.merge_result_folder(folder, domain="Human-Domain", version="v1.1")
    assert result["aes_score"] == pytest.approx(-4 / 3)  # (0 - 4) / 3
    assert result["natural_score"] == pytest.approx(-1 / 4)
    assert result["motion_amplitude"] == result["motion_smoothness"] == result["gme_score"] == 0
    assert result["total_score"] == pytest.approx(0.18 * (-4 / 3) + 0.25 * 0.5 + 0.30 * (-1 / 4))
    assert result == pytest.approx(recompute(folder, "Human-Domain", "v1.1"))
    counts = opens2v.counted_videos(opens2v.merge_score_files(opens2v.read_score_files(folder), version="v1.1"), version="v1.1")
    assert counts["facesim_cur"] == 1 and counts["aes_score"] == counts["natural_score"] == 0


def test_the_published_videomaker_row_comes_out_of_the_v1_0_weights():
    # Videos whose averages are the published Human-Domain sub-scores (31.76, 50.09, 76.45, 45.28, 47.08 %).
    per_video = {
        "singleface_1": {
            "aes_score": 4 + 3 * 0.3176,
            "motion_score": 0.5009,
            "facesim_cur": 0.7645,
            "gme_score": 0.4528,
            "natural_score": 1 + 4 * 0.4708,
        }
    }
    result = opens2v.total_score(per_video, domain="Human-Domain", version="v1.0")
    assert round(100 * result["total_score"], 2) == 52.31
    plain = 0.15 * 0.3176 + 0.15 * 0.5009 + 0.25 * 0.7645 + 0.15 * 0.4528 + 0.30 * 0.4708
    assert result["total_score"] == pytest.approx(plain)
    published = next(row for row in opens2v_published_rows("Human-Domain", version="v1.0") if row["method"] == "VideoMaker")
    assert published["total_score"] == 0.5231 and published["facesim_cur"] == 0.7645
    # Open-domain weights would not give it: the domain matters.
    assert round(100 * opens2v.total_score(per_video, domain="Open-Domain", version="v1.0")["total_score"], 2) != 52.31


def test_every_published_total_follows_from_its_sub_scores_by_the_published_weights():
    weights = {("v1.0", True): V10_HUMAN, ("v1.0", False): V10_OTHER, ("v1.1", True): V11_HUMAN, ("v1.1", False): V11_OTHER}
    off = []
    for version in ("v1.0", "v1.1"):
        for domain in ("Human-Domain", "Open-Domain", "Single-Domain"):
            rows = opens2v_published_rows(domain, version=version)
            assert rows and all(row["version"] == version and "OpenS2V" in row["source"] for row in rows)
            for row in rows:
                total = sum(w * row[JSON_KEY[name]] for name, w in weights[(version, domain == "Human-Domain")].items())
                if abs(total - row["total_score"]) > 0.00015:  # sub-scores printed to 0.01 %
                    off.append((version, domain, row["method"]))
    assert off == [("v1.0", "Human-Domain", "EchoVideo")]  # as published (its sub-scores weigh to 54.43 %)
    human = {row["method"] for row in opens2v_published_rows("Human-Domain", version="v1.1")}
    assert "VideoMaker" in human and len(human) == 20
    with pytest.raises(ValueError, match="Available"):
        opens2v_published_rows("Human", version="v1.0")


def test_score_files_round_trip_in_openS2V_format(tmp_path):
    per_video = {
        "singleface_3": {
            "aes_score": 5.19,
            "motion_amplitude": 0.0388,
            "motion_lk": 0.73,
            "motion_smoothness": 1.0,
            "facesim_cur": 0.942,
            "facesim_arc": 0.937,
            "gme_score": 0.672,
            "naturalscore_1": 3,
            "naturalscore_2": 3,
            "naturalscore_3": 4,
        },
        "faceobj_14": {"aes_score": 4.81, "gme_score": 0.681, "nexus_score": 0.013, "natural_score": 3.5, "facesim_cur": None},
    }
    folder = tmp_path / "out"
    written = opens2v.write_score_files(folder, per_video, version="v1.1")
    assert sorted(p.name for p in written) == sorted(
        [
            "aesthetic_score.json",
            "motion_amplitude.json",
            "motion_smoothness.json",
            "facesim.json",
            "gmescore.json",
            "nexusscore.json",
            "naturalscore_1.json",
            "naturalscore_2.json",
            "naturalscore_3.json",
        ]
    )
    read = {p.name: json.loads(p.read_text()) for p in written}
    assert read["facesim.json"] == {"singleface_3": {"cur_score": 0.942, "arc_score": 0.937}}  # no entry for None
    assert read["motion_amplitude.json"] == {"singleface_3": {"motion_fb": 0.0388, "motion_lk": 0.73}}
    assert read["naturalscore_1.json"] == {"singleface_3": "3", "faceobj_14": "3.5"}  # the judge's reply is text
    assert read["nexusscore.json"] == {"faceobj_14": {"nexus_score": 0.013}}
    merged = opens2v.merge_score_files(opens2v.read_score_files(folder), version="v1.1")
    assert merged["singleface_3"]["natural_score"] == pytest.approx(10 / 3)
    assert merged["faceobj_14"] == {"aes_score": 4.81, "gme_score": 0.681, "nexus_score": 0.013, "natural_score": 3.5}
    result = opens2v.merge_result_folder(folder, domain="Open-Domain", version="v1.1")
    assert result == pytest.approx(recompute(folder, "Open-Domain", "v1.1"))
    # v1.0 names the motion file motionscore.json.
    v10 = {"singleface_3": {"motion_score": 0.0388, "motion_lk": 0.73}}
    written = opens2v.write_score_files(tmp_path / "v10", v10, version="v1.0")
    assert [p.name for p in written] == ["motionscore.json"]
    assert json.loads(written[0].read_text()) == {"singleface_3": {"motion_fb": 0.0388, "motion_lk": 0.73}}


def test_result_json_is_written_as_the_merge_writes_it(tmp_path):
    result = opens2v.merge_result_folder(score_folder(tmp_path, "v1.1"), domain="Open-Domain", version="v1.1")
    name = opens2v.result_file_name("mymodel", "Open-Domain")
    assert name == "mymodel_Open-Domain.json"
    path = opens2v.write_result_json(tmp_path / name, result)
    assert path.read_text() == json.dumps(result, indent=4)
    assert list(opens2v.read_result_json(path)) == [
        "total_score",
        "aes_score",
        "motion_smoothness",
        "motion_amplitude",
        "facesim_cur",
        "gme_score",
        "nexus_score",
        "natural_score",
    ]
    with pytest.raises(ValueError, match="non-finite"):
        opens2v.write_result_json(tmp_path / "nan.json", {**result, "total_score": math.nan})


def test_bad_score_inputs_are_refused_with_the_file_the_video_and_the_fix(tmp_path):
    folder = score_folder(tmp_path, "v1.1")
    write_json(folder / "naturalscore_2.json", {"a": "error"})
    with pytest.raises(ValueError, match=r"naturalscore_2\.json has 'error' for video 'a'.*re-run NaturalScore"):
        opens2v.merge_result_folder(folder, domain="Open-Domain", version="v1.1")
    with pytest.raises(ValueError, match=r"has \['motionscore\.json'\], written by the v1\.0 scripts; merge it with version='v1\.0'"):
        opens2v.merge_result_folder(score_folder(tmp_path, "v1.0").parent / "scores_v1.0", domain="Open-Domain", version="v1.1")
    with pytest.raises(ValueError, match="spelt exactly"):
        opens2v.total_score({}, domain="human-domain", version="v1.0")
    with pytest.raises(ValueError, match="protocol version"):
        opens2v.total_score({}, domain="Human-Domain", version="1.1")
    with pytest.raises(ValueError, match=r"video 'x' has gme_score=None.*leave 'gme_score' out"):
        opens2v.total_score({"x": {"gme_score": None}}, domain="Open-Domain", version="v1.1")


# --- manifests, items, naming ---------------------------------------------------------------


def make_image(path, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), color).save(path)


@pytest.fixture
def eval_folder(tmp_path):
    """An OpenS2V-Eval download in miniature: the manifests and their Images/ folder."""
    root = tmp_path / "OpenS2V-Eval"
    for rel, color in [
        ("Images/singleface/crop_man/1.png", (200, 150, 120)),
        ("Images/singleobject/cup/2.jpg", (20, 20, 200)),
        ("Images/humanobj/human/woman/3.jpg", (190, 140, 110)),
        ("Images/humanobj/thing/bird/4.jpg", (10, 200, 10)),
        ("Images/humanobj/environment/park/5.jpg", (10, 120, 10)),
    ]:
        make_image(root / rel, color)
    write_json(
        root / "Human-Domain_Eval.json",
        {
            "singleface_1": {
                "img_paths": ["Images/singleface/crop_man/1.png"],
                "prompt": "A man reading a book in a park.",
                "synthesis_flag": "wrong",
                "class_label": ["Man"],
            }
        },
    )
    write_json(
        root / "Open-Domain_Eval.json",
        {
            "singleobj_1": {
                "img_paths": ["Images/singleobject/cup/2.jpg"],
                "prompt": "A cup on a table.\n\nbackground",
                "synthesis_flag": "wrong",
                "class_label": ["Cup"],
            },
            "humanobj_1": {
                "img_paths": [
                    "Images/humanobj/human/woman/3.jpg",
                    "Images/humanobj/thing/bird/4.jpg",
                    "Images/humanobj/environment/park/5.jpg",
                ],
                "prompt": "A woman feeding a bird in a park.",
                "synthesis_flag": "True",
                "class_label": ["Woman", "Bird", "Park"],
            },
        },
    )
    return root


def test_manifests_become_items_with_every_reference_kept(eval_folder):
    human = read_opens2v_manifest(eval_folder / "Human-Domain_Eval.json")
    open_domain = read_opens2v_manifest(eval_folder / "Open-Domain_Eval.json")
    assert [e.video_id for e in human] == ["singleface_1"] and human[0].domain == "Human-Domain"
    multi = next(e for e in open_domain if e.video_id == "humanobj_1")
    assert multi.multi_subject and multi.class_labels == ("Woman", "Bird", "Park")
    assert multi.images == tuple(
        str(eval_folder / p)
        for p in ("Images/humanobj/human/woman/3.jpg", "Images/humanobj/thing/bird/4.jpg", "Images/humanobj/environment/park/5.jpg")
    )
    assert multi.reference == multi.images[0] and multi.category == "humanobj"

    items = opens2v_items(open_domain, seeds=(0, 1))
    assert [(i.item_id, i.prompt) for i in items] == [
        ("opens2v_open/singleobj_1/p00_s0", "A cup on a table.\n\nbackground"),
        ("opens2v_open/singleobj_1/p00_s1", "A cup on a table.\n\nbackground"),
        ("opens2v_open/humanobj_1/p00_s0", "A woman feeding a bird in a park."),
        ("opens2v_open/humanobj_1/p00_s1", "A woman feeding a bird in a park."),
    ]
    cup, woman = items[0].subject, items[2].subject
    assert (cup.subject_class, cup.is_human) == ("cup", False)
    assert (woman.subject_class, woman.is_human, woman.reference) == ("woman", True, str(eval_folder / "Images/humanobj/human/woman/3.jpg"))
    assert opens2v_items(human)[0].subject.set == "opens2v_human"
    assert [opens2v_video_name(i) for i in items[::2]] == ["singleobj_1.mp4", "humanobj_1.mp4"]


def test_image_root_and_domain_for_a_renamed_manifest(eval_folder, tmp_path):
    moved = tmp_path / "elsewhere" / "my_eval.json"
    moved.parent.mkdir()
    moved.write_text((eval_folder / "Human-Domain_Eval.json").read_text())
    with pytest.raises(ValueError, match=r"my_eval\.json.*pass `domain`"):
        read_opens2v_manifest(moved)
    entries = read_opens2v_manifest(moved, domain="Human-Domain", image_root=eval_folder)
    assert entries[0].reference == str(eval_folder / "Images/singleface/crop_man/1.png")
    with pytest.raises(ValueError, match="is the Human-Domain file but `domain`='Open-Domain'"):
        read_opens2v_manifest(eval_folder / "Human-Domain_Eval.json", domain="Open-Domain")


def test_bad_manifests_name_the_file_every_bad_entry_and_the_fix(eval_folder):
    path = eval_folder / "Open-Domain_Eval.json"
    path.write_text(
        """{
        "ok_1": {"img_paths": ["Images/singleobject/cup/2.jpg"], "prompt": "A cup.", "class_label": ["Cup"]},
        "missing_1": {"img_paths": ["Images/nowhere/9.jpg"], "prompt": "A cat.", "class_label": ["Cat"]},
        "labels_1": {"img_paths": ["Images/singleobject/cup/2.jpg", "Images/humanobj/thing/bird/4.jpg"],
                     "prompt": "Two.", "class_label": ["Cup"]},
        "noprompt_1": {"img_paths": ["Images/singleobject/cup/2.jpg"], "prompt": " ", "class_label": ["Cup"]},
        "dup_1": {"img_paths": ["Images/singleobject/cup/2.jpg"], "prompt": "A.", "class_label": ["Cup"]},
        "dup_1": {"img_paths": ["Images/singleobject/cup/2.jpg"], "prompt": "B.", "class_label": ["Cup"]},
        "bad/id": {"img_paths": ["Images/singleobject/cup/2.jpg"], "prompt": "C.", "class_label": ["Cup"]},
        "list_1": ["Images/singleobject/cup/2.jpg"]
    }"""
    )
    with pytest.raises(BenchmarkManifestError) as raised:
        read_opens2v_manifest(path)
    message = str(raised.value)
    assert str(path) in message and "fix them and re-run" in message
    problems = raised.value.problems
    assert len(problems) == 6, problems
    assert any("'missing_1'" in p and "does not exist" in p for p in problems)
    assert any("'labels_1'" in p and "1 label(s) for 2 image(s); give one label per image" in p for p in problems)
    assert any("'noprompt_1'" in p and "'prompt' must be a non-empty string" in p for p in problems)
    assert any("'dup_1' appears more than once; keep one entry per id" in p for p in problems)
    assert any("'bad/id'" in p and "without path separators" in p for p in problems)
    assert any("'list_1'" in p and "not an object" in p for p in problems)

    path.write_text('[{"prompt": "x"}]')
    with pytest.raises(BenchmarkManifestError, match="top level is list; OpenS2V's format is an object of video id"):
        read_opens2v_manifest(path)
    path.write_text('{"a": ')
    with pytest.raises(BenchmarkManifestError, match="not valid JSON"):
        read_opens2v_manifest(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_opens2v_manifest(eval_folder / "Single-Domain_Eval.json")


def finished_item(videos_dir, item, payload):
    """An item's files as generation leaves them: the mp4 and the sidecar that lists it with its size."""
    stem = videos_dir / item.item_id
    stem.parent.mkdir(parents=True, exist_ok=True)
    (stem.parent / f"{stem.name}.mp4").write_bytes(payload)
    (stem.parent / f"{stem.name}.json").write_text(json.dumps({"files": {f"{stem.name}.mp4": len(payload)}}))


def test_export_writes_videoid_mp4_and_records_the_references(eval_folder, tmp_path):
    entries = read_opens2v_manifest(eval_folder / "Open-Domain_Eval.json")
    items = opens2v_items(entries, seeds=(0, 1))
    videos = tmp_path / "eval" / "videos"
    for item in items:
        finished_item(videos, item, f"{item.item_id}".encode())
    with pytest.raises(ValueError, match="several seeds.*pass `seed`"):
        export_opens2v_videos(items, entries, videos, tmp_path / "export")
    record = export_opens2v_videos(items, entries, videos, tmp_path / "export", seed=1)
    exported = sorted(p.name for p in (tmp_path / "export").iterdir())
    assert exported == ["humanobj_1.mp4", "opens2v_export.json", "singleobj_1.mp4"]
    assert (tmp_path / "export" / "humanobj_1.mp4").read_bytes() == b"opens2v_open/humanobj_1/p00_s1"
    saved = json.loads((tmp_path / "export" / "opens2v_export.json").read_text())
    assert saved == record and saved["missing"] == []
    assert saved["videos"]["humanobj_1"]["reference_used"] == str(eval_folder / "Images/humanobj/human/woman/3.jpg")
    assert saved["videos"]["humanobj_1"]["references_not_used"] == [
        str(eval_folder / "Images/humanobj/thing/bird/4.jpg"),
        str(eval_folder / "Images/humanobj/environment/park/5.jpg"),
    ]

    (videos / "opens2v_open/singleobj_1/p00_s0.json").unlink()  # an unfinished item
    with pytest.raises(ValueError, match=r"(?s)1 video\(s\) to export are missing.*singleobj_1"):
        export_opens2v_videos(items, entries, videos, tmp_path / "export0", seed=0)
    assert not (tmp_path / "export0").exists()  # nothing copied
    partial = export_opens2v_videos(items, entries, videos, tmp_path / "export0", seed=0, allow_missing=True)
    assert list(partial["videos"]) == ["humanobj_1"] and "singleobj_1" in partial["missing"][0]


def test_a_folder_of_videoid_mp4_imports_through_the_import_manifest(eval_folder, tmp_path):
    from pipelines.evaluation.imports import import_videos

    items = opens2v_items(read_opens2v_manifest(eval_folder / "Open-Domain_Eval.json"))
    theirs = tmp_path / "their_model"
    theirs.mkdir()
    (theirs / "humanobj_1.mp4").write_bytes(b"their video")
    with pytest.raises(ValueError, match=r"must end in \.jsonl"):
        write_opens2v_import_manifest(items, theirs, tmp_path / "import.csv")
    absent = write_opens2v_import_manifest(items, theirs, tmp_path / "import.jsonl")
    assert absent == ["singleobj_1"]
    summary = import_videos(items, tmp_path / "import.jsonl", tmp_path / "videos")
    assert summary.generated == 1 and list(summary.failed) == ["opens2v_open/singleobj_1/p00_s0"]
    assert (tmp_path / "videos/opens2v_open/humanobj_1/p00_s0.mp4").read_bytes() == b"their video"


# --- compare ------------------------------------------------------------------------------------


def opens2v_record(video, *, seed=0, **scores):
    from metrics.records import RECORD_SCHEMA

    record = dict.fromkeys(RECORD_SCHEMA.names)
    record.update(
        video=f"{video}.mp4",
        subject_id=video,
        prompt="p",
        seed=seed,
        reference="r.png",
        set="opens2v_human",
        method="ours",
        status="ok",
        frames=16,
        clip_t=0.25,
        clip_i=0.8,
        dino_i=0.7,
        t_cons=0.98,
        dd_dynamic=True,
        subject_class="man",
        face_status="scored",
        face_sim=0.7,
        face_frames=16,
        face_detection_rate=1.0,
    )
    record.update(scores)
    return record


def test_compare_shows_the_openS2V_total_of_a_run_beside_the_published_rows():
    from pipelines.evaluation.run_deltas import compare_records

    records = [
        opens2v_record(
            "singleface_1",
            aes_score=5.5,
            motion_amplitude=0.3,
            motion_smoothness=0.9,
            gme_score=0.5,
            natural_score=4.0,
            facesim_cur_opens2v=0.8,
        ),
        opens2v_record(
            "singleface_2",
            aes_score=8.0,
            motion_amplitude=-0.2,
            motion_smoothness=1.0,
            gme_score=0.7,
            natural_score=2.0,
            facesim_cur_opens2v=1.1,
        ),
    ]
    text = compare_records([("ours", records)], n_boot=10).text()
    aes, natural = ((5.5 + 7.0) / 2 - 4) / 3, ((4.0 + 2.0) / 2 - 1) / 4
    v11 = 0.18 * aes + 0.09 * 0.95 + 0.03 * 0.25 + 0.25 * 0.9 + 0.15 * 0.6 + 0.30 * natural
    v10 = 0.15 * aes + 0.15 * 0.25 + 0.25 * 0.9 + 0.15 * 0.6 + 0.30 * natural  # v1.0's motion is the amplitude
    assert "opens2v_human: OpenS2V-Eval v1.0, Human-Domain (%)" in text and "opens2v_human: OpenS2V-Eval v1.1, Human-Domain (%)" in text
    sections = text.split("opens2v_human: OpenS2V-Eval ")[1:]
    ours = [line.split() for section in sections for line in section.splitlines() if line.startswith("ours ")]
    assert [float(row[2]) for row in ours] == [round(100 * v10, 2), round(100 * v11, 2)]
    assert any(line.startswith("VideoMaker (OpenS2V)") and " 52.31 " in line for line in text.splitlines())
    assert any(line.startswith("VideoMaker (OpenS2V)") and " 54.23 " in line for line in text.splitlines())
    assert "opens2v" not in compare_records([("ours", [opens2v_record("x", set="celebrity")])], n_boot=10).text()
    assert "(OpenS2V)" not in compare_records([("ours", records)], include_published=False, n_boot=10).text()


@pytest.mark.slow
def test_evaluate_runs_an_openS2V_manifest_end_to_end(eval_folder, tmp_path, tiny_metric_models, capsys):
    """`videomaker evaluate --benchmark Open-Domain_Eval.json`: its items generated, scored with the opens2v group,
    exported as <videoid>.mp4 and merged into OpenS2V's result JSON, equal to the merge written out here."""
    import dataclasses

    import pyarrow.parquet as pq
    import ray
    import yaml

    from jobs.cli import main
    from metrics.backends import BackendSpec
    from metrics.backends.random_init import save_random_aesthetic

    config = {
        "method": {"kind": "videomaker", "preset": "tiny"},
        "seeds": [0, 1],  # OpenS2V scores one video per id: its files and total are seed 0's
        "generation": {"num_inference_steps": 2},
        "generators": {"num_cpus": 0.5, "batch_size": 2},
        "backends": {
            **dataclasses.asdict(tiny_metric_models),
            "flow": {"name": "opencv", "options": {}},
            "aesthetic": dataclasses.asdict(BackendSpec("laion-aesthetic", save_random_aesthetic(tmp_path / "aes"))),
        },
        "scorers": {"num_cpus": 0.5, "batch_size": 8},
    }
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    argv = ["evaluate", "--config", str(tmp_path / "eval.yaml"), "--benchmark", str(eval_folder / "Open-Domain_Eval.json")]
    try:
        assert main([*argv, "--output-dir", str(out), "--run-name", "tiny", "--no-progress"]) == 0, capsys.readouterr().err[-3000:]
    finally:
        ray.shutdown()
    everything = pq.read_table(out / "scores" / "samples.parquet").to_pylist()
    assert len(everything) == 4 and {s["metric_groups"] for s in everything} == {"paper,opens2v"}  # its metrics joined the pass
    samples = [s for s in everything if s["seed"] == 0]
    assert sorted(s["subject_id"] for s in samples) == ["humanobj_1", "singleobj_1"] and {s["set"] for s in samples} == {"opens2v_open"}
    assert {s["prompt"] for s in samples} == {"A cup on a table.\n\nbackground", "A woman feeding a bird in a park."}
    assert sorted(p.name for p in (out / "scores" / "opens2v" / "videos").glob("*.mp4")) == ["humanobj_1.mp4", "singleobj_1.mp4"]
    # The merge, written out here: only aesthetics and motion were computed; the other sub-scores count as absent.
    aes = np.mean([min(max(s["aes_score"], 4), 7) for s in samples])
    motion = np.mean([min(abs(s["motion_amplitude"]), 1) for s in samples])
    absent_natural = (0 - 1) / 4
    expected = {
        "v1.0": 0.12 * (aes - 4) / 3 + 0.12 * motion + 0.24 * absent_natural,
        "v1.1": 0.16 * (aes - 4) / 3 + 0.02 * motion + 0.24 * absent_natural,
    }
    for version, total in expected.items():
        result = json.loads((out / "scores" / "opens2v" / version / "tiny_Open-Domain.json").read_text())
        assert result["total_score"] == pytest.approx(total, abs=1e-12), version
    files = json.loads((out / "scores" / "opens2v" / "v1.0" / "aesthetic_score.json").read_text())
    assert set(files) == {"humanobj_1", "singleobj_1"} and all("aes_score" in v for v in files.values())  # keyed as OpenS2V keys


def test_facesim_cur_follows_opens2v_s_reference_rule(tmp_path):
    """OpenS2V's FaceSim-Cur scores ids of its human categories only, against the first image under a man/woman folder."""
    root = tmp_path / "eval"
    paths = ["Images/humanobj/thing/cup/1.jpg", "Images/humanobj/human/woman/2.jpg", "Images/singleface/crop_man/3.png", "man/4.png"]
    for k, rel in enumerate(paths):
        make_image(root / rel, (40 * k, 90, 160))
    entries = {
        "humanobj_7": {"img_paths": paths[:2], "prompt": "A woman holds a cup.", "class_label": ["Cup", "Woman"]},
        "singleface_2": {"img_paths": [paths[2]], "prompt": "A man.", "class_label": ["Man"]},
        "singleobj_3": {"img_paths": [paths[1]], "prompt": "A woman?", "class_label": ["Woman"]},  # not a face category
        "faceobj_4": {"img_paths": [paths[0]], "prompt": "A cup.", "class_label": ["Cup"]},  # no man/woman folder
        "singlehuman_5": {"img_paths": [paths[3]], "prompt": "A man.", "class_label": ["Man"]},  # "man/" has no leading slash
    }
    write_json(root / "Open-Domain_Eval.json", entries)
    read = {e.video_id: e for e in read_opens2v_manifest(root / "Open-Domain_Eval.json")}
    want = {"humanobj_7": str(root / paths[1]), "singleface_2": str(root / paths[2]), "singleobj_3": None, "faceobj_4": None}
    want["singlehuman_5"] = None  # the script matches the path as written, which has no "/man/"
    assert {video_id: entry.face_cur_reference for video_id, entry in read.items()} == want
    items = {i.subject.subject_id: i.subject for i in opens2v_items(read.values())}
    # The items carry it to scoring; "none" says FaceSim-Cur is not scored (metrics.records.NO_FACE_CUR).
    assert {k: s.face_cur_reference for k, s in items.items()} == {k: v or "none" for k, v in want.items()}
    assert items["humanobj_7"].reference == str(root / paths[0])  # the generator still gets the first image
