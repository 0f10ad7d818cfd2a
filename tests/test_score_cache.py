"""Incremental scoring: each unit of the pass is cached per (video content, backend, protocol), so a re-run calls a
model only for what changed. Counted by wrapping every backend; values checked against a run without any cache."""

import dataclasses
import logging

import numpy as np
import pytest
from PIL import Image

from metrics.backends import BackendSpec, MetricBackends, load_backend, load_backends
from metrics.backends.random_init import save_random_aesthetic, save_random_open_clip
from metrics.records import ScoreRequest, score_requests
from metrics.score_cache import ScoreCache, compact, part_files
from metrics.suite import MetricSuite
from test_natural_score import ChatServer


class Counting:
    """A backend whose model calls are logged in `log[role]` (`embed_*` with the number of inputs); `describe` is not a call."""

    def __init__(self, inner, role, log):
        self._inner, self._role, self._log = inner, role, log

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr) or name == "describe":
            return attr

        def counted(*args, **kwargs):
            self._log.setdefault(self._role, []).append(f"{name}:{len(args[0])}" if name.startswith("embed_") else name)
            return attr(*args, **kwargs)

        return counted


def counted_suite(loaded: MetricBackends, log: dict, **options) -> MetricSuite:
    wrapped = {f.name: getattr(loaded, f.name) for f in dataclasses.fields(loaded)}
    wrapped = {role: (Counting(b, role, log) if b is not None else None) for role, b in wrapped.items()}
    return MetricSuite(MetricBackends(**wrapped), **options)


def clip_video(seed: int, size: int = 128) -> np.ndarray:
    """A crop of the astronaut photo drifting a few pixels per frame (the tiny detector finds her face)."""
    from skimage import data

    photo = data.astronaut()
    return np.stack([photo[90 + 2 * k + seed : 90 + 2 * k + seed + size, 150 + 3 * k : 150 + 3 * k + size] for k in range(16)])


@pytest.fixture
def requests(tmp_path, reference_image):
    from videomaker.export import write_mp4

    Image.fromarray(reference_image).save(tmp_path / "ref.png")
    out = []
    for name, seed, subject_class in (("a", 0, "person"), ("b", 6, "person"), ("cup", 12, "cup")):
        write_mp4(clip_video(seed), tmp_path / f"{name}.mp4", fps=8)
        video, reference = str(tmp_path / f"{name}.mp4"), str(tmp_path / "ref.png")
        out.append(ScoreRequest(video, name, f"A {subject_class}.", reference, subject_class=subject_class))
    return out


@pytest.fixture(scope="module")
def loaded(tiny_metric_models):
    return load_backends(tiny_metric_models)


def run(suite, requests, folder):
    """One scoring run reading and adding to the cache in `folder`, as an actor does: open, score, flush."""
    cache = ScoreCache.open(str(folder))
    records = score_requests(suite, requests, cache=cache)
    cache.flush()
    return records


def same_scores(got: list[dict], want: list[dict]) -> None:
    """Equal records but `cached_units`; floats to 1e-6 (a prompt embedded in another batch differs in its last bits)."""

    def close(value):
        if isinstance(value, float):
            return pytest.approx(value, rel=1e-6, abs=1e-9)
        return [close(v) for v in value] if isinstance(value, list) else value

    for g, w in zip(got, want, strict=True):
        assert {k: v for k, v in g.items() if k != "cached_units"} == {k: close(v) for k, v in w.items() if k != "cached_units"}


def test_a_rerun_with_nothing_new_calls_no_model_and_gives_the_same_records(loaded, requests, tmp_path):
    log = {}
    first = run(counted_suite(loaded, log), requests, tmp_path / "cache")
    assert all(r["status"] == "ok" for r in first) and first[0]["face_status"] == "scored"
    assert {role for role in log} == {"clip", "dino", "face", "flow"}
    uncached = score_requests(MetricSuite(loaded), requests)  # no cache at all
    same_scores(first, uncached)
    assert [r["cached_units"] for r in first] == ["", "", ""]

    log.clear()
    again = run(counted_suite(loaded, log), requests, tmp_path / "cache")  # a new scorer: only the folder is shared
    assert log == {}
    assert [{k: v for k, v in r.items() if k != "cached_units"} for r in again] == [
        {k: v for k, v in r.items() if k != "cached_units"} for r in first
    ]  # bit for bit: the cache keeps the values themselves
    assert [r["cached_units"] for r in again] == ["clip,dino,face,dd"] * 2 + ["clip,dino,dd"]  # no Face Sim for a cup


def test_adding_a_metric_group_computes_only_its_metrics(loaded, requests, tmp_path, tmp_path_factory):
    run(MetricSuite(loaded), requests, tmp_path / "cache")
    options = save_random_aesthetic(tmp_path_factory.mktemp("aesthetic"))
    aesthetic = load_backend("aesthetic", BackendSpec("laion-aesthetic", options))
    log = {}
    suite = counted_suite(dataclasses.replace(loaded, aesthetic=aesthetic), log, groups=("vbench", "opens2v"))
    records = run(suite, requests, tmp_path / "cache")
    # temporal flickering and motion amplitude need no model; I2V subject reads DINO frame embeddings.
    assert set(log) == {"dino", "aesthetic"} and set(log["aesthetic"]) == {"score_video"}
    assert log["dino"] == ["embed_images:1", "embed_images:48"]  # a new scorer's reference, then every video's frames at once
    assert all(r["cached_units"] in ("clip,dino,face,dd", "clip,dino,dd") for r in records)
    want = score_requests(MetricSuite(dataclasses.replace(loaded, aesthetic=aesthetic), groups=("vbench", "opens2v")), requests)
    same_scores(records, want)

    log.clear()
    assert all(r["cached_units"].endswith("aes_score") for r in run(suite, requests, tmp_path / "cache")) and log == {}


def test_new_weights_for_one_backend_recompute_only_its_metrics(loaded, tiny_metric_models, requests, tmp_path, tmp_path_factory):
    first = run(MetricSuite(loaded), requests, tmp_path / "cache")
    other = BackendSpec("open_clip", {"model": save_random_open_clip(tmp_path_factory.mktemp("clip2") / "clip", seed=5)})
    retrained = load_backends(dataclasses.replace(tiny_metric_models, clip=other))
    assert retrained.clip.describe()["digest"] != loaded.clip.describe()["digest"]
    log = {}
    records = run(counted_suite(dataclasses.replace(loaded, clip=retrained.clip), log), requests, tmp_path / "cache")
    assert set(log) == {"clip"}
    assert [r["cached_units"] for r in records] == ["dino,face,dd"] * 2 + ["dino,dd"]
    want = score_requests(MetricSuite(dataclasses.replace(loaded, clip=retrained.clip)), requests)
    same_scores(records, want)
    assert all(r["clip_t"] != f["clip_t"] and r["dino_i"] == f["dino_i"] for r, f in zip(records, first))


def test_a_protocol_change_recomputes_face_sim_alone_and_an_edited_video_only_itself(loaded, requests, tmp_path):
    from videomaker.export import write_mp4

    run(MetricSuite(loaded), requests, tmp_path / "cache")
    log = {}
    paper = run(counted_suite(loaded, log, face_protocol="paper"), requests, tmp_path / "cache")
    assert set(log) == {"face"}
    assert [r["cached_units"] for r in paper] == ["clip,dino,dd"] * 3
    same_scores(paper, score_requests(MetricSuite(loaded, face_protocol="paper"), requests))

    write_mp4(clip_video(30), requests[1].video, fps=8)  # video b regenerated
    log.clear()
    records = run(counted_suite(loaded, log), requests, tmp_path / "cache")
    assert [r["cached_units"] for r in records] == ["clip,dino,face,dd", "", "clip,dino,dd"]
    # A new scorer embeds the reference and that video's prompt again (in memory only), then its frames, once.
    assert log["clip"] == ["embed_images:1", "embed_texts:1", "embed_images:16"] and log["flow"] == ["consecutive_flows"]
    same_scores(records, score_requests(MetricSuite(loaded), requests))


def test_a_failed_judge_is_asked_again_and_a_reply_is_kept(loaded, requests, tmp_path):
    with ChatServer(lambda body, n: (500, "RAW:down") if n == 1 else (200, "4")) as server:
        spec = {"base_url": server.base_url, "model": "judge", "api_key_env": None, "retries": 0, "runs": 1, "retry_wait_s": 0.0}
        natural = load_backend("natural", BackendSpec("openai-chat", spec))
        suite = MetricSuite(dataclasses.replace(loaded, natural=natural), groups=("opens2v",))
        first = run(suite, requests[:1], tmp_path / "cache")
        assert first[0]["natural_score"] is None and "NaturalScore:" in first[0]["message"]
        asked = len(server.requests)
        second = run(suite, requests[:1], tmp_path / "cache")
        assert len(server.requests) == asked + 1 and "natural_score" not in second[0]["cached_units"]  # asked again
        third = run(suite, requests[:1], tmp_path / "cache")
    assert second[0]["natural_score"] == 4.0 and third[0]["natural_score"] == 4.0
    assert len(server.requests) == asked + 1 and third[0]["cached_units"].endswith("natural_score") and not third[0]["message"]


def test_parts_compact_into_one_and_a_broken_part_costs_only_a_recomputation(loaded, requests, tmp_path, caplog):
    folder = tmp_path / "cache"
    for request in requests:  # three runs, three parts
        run(MetricSuite(loaded), [request], folder)
    assert len(part_files(str(folder))) == 3
    entries = len(ScoreCache.open(str(folder)))
    assert entries == 4 + 4 + 3  # clip, dino, face, dd per person; no face unit for the cup
    assert compact(str(folder)) == entries and len(part_files(str(folder))) == 1 and len(ScoreCache.open(str(folder))) == entries

    (folder / "part-broken.parquet").write_bytes(b"PAR1 not a parquet file")
    log = {}
    with caplog.at_level(logging.WARNING, logger="metrics.score_cache"):
        records = run(counted_suite(loaded, log), requests, folder)
    assert "part-broken.parquet is unreadable" in caplog.text and log == {}  # the good part still serves every unit
    (single,) = [p for p in part_files(str(folder)) if "broken" not in p]
    (folder / single.rsplit("/", 1)[-1]).write_bytes(b"")  # the only good part lost as well
    records = run(counted_suite(loaded, log), requests, folder)
    assert set(log) == {"clip", "dino", "face", "flow"} and all(r["status"] == "ok" for r in records)


def test_compaction_keeps_what_it_could_not_read_and_leaves_earlier_merges(loaded, requests, tmp_path):
    folder = tmp_path / "cache"
    run(MetricSuite(loaded), requests[:1], folder)
    run(MetricSuite(loaded), requests[1:2], folder)
    (folder / "part-unreadable.parquet").write_bytes(b"not parquet")  # e.g. a read that failed this once
    assert compact(str(folder)) == 8  # the two good parts' units
    names = sorted(p.rsplit("/", 1)[-1] for p in part_files(str(folder)))
    assert "part-unreadable.parquet" in names and len(names) == 2 and names[0].startswith("merged-")
    (folder / "part-unreadable.parquet").unlink()
    run(MetricSuite(loaded), requests[2:], folder)  # the next run's one part is not worth a rewrite of the merged one
    assert compact(str(folder)) == 0 and len(part_files(str(folder))) == 2
    assert compact(str(folder), max_merged=1) == 11 and len(part_files(str(folder))) == 1  # too many merged: all of them


def test_an_unusable_cache_folder_costs_the_cache_not_the_scores(loaded, requests, tmp_path, caplog):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="metrics.score_cache"):
        records = run(MetricSuite(loaded), requests, blocker)
        assert compact(str(blocker)) == 0
    assert all(r["status"] == "ok" for r in records) and "units not written" in caplog.text
    same_scores(records, score_requests(MetricSuite(loaded), requests))
