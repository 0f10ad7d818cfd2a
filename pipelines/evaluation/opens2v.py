"""OpenS2V-Eval as a benchmark: its evaluation manifests as benchmark items, its `<videoid>.mp4` naming.

OpenS2V-Eval ships one JSON manifest per domain (`Human-Domain_Eval.json`, `Open-Domain_Eval.json`,
`Single-Domain_Eval.json`): an object of video id -> {"img_paths": [...], "prompt": ..., "class_label":
[...], "synthesis_flag": ...}, image paths relative to the folder the manifest sits in (its
`Images/` folder). Each entry becomes one `BenchmarkItem` per seed, in the set `opens2v_human`,
`opens2v_open` or `opens2v_single`, with the video id as subject id and the entry's own prompt.

Multi-subject entries (up to three reference images) keep every image in `OpenS2VEntry.images`;
the single-reference generator uses the first (`OpenS2VEntry.reference`), which is the person
wherever an entry has one, and `export_opens2v_videos` records which image each video used.

Example:
    >>> entries = read_opens2v_manifest("OpenS2V-Eval/Human-Domain_Eval.json")
    >>> items = opens2v_items(entries, seeds=(0,))
    >>> opens2v_video_name(items[0])
    'singlehuman_1.mp4'
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from metrics.opens2v import OPENS2V_SETS, SET_DOMAINS
from metrics.records import NO_FACE_CUR
from pipelines.evaluation.benchmarks import BenchmarkItem, BenchmarkManifestError, BenchmarkSubject, image_problem
from videomaker import storage

# Manifest file name -> the domain it evaluates (the merge's eval type); OPENS2V_SETS: domain -> our set name.
MANIFEST_DOMAINS = {
    "Human-Domain_Eval.json": "Human-Domain",
    "Open-Domain_Eval.json": "Open-Domain",
    "Single-Domain_Eval.json": "Single-Domain",
}
EXPORT_RECORD = "opens2v_export.json"  # written beside the exported videos
_DUPLICATES = "\0duplicates"  # where the JSON hook notes keys written twice (no real key holds a NUL)


# OpenS2V's FaceSim-Cur: which ids it scores and which image of an entry is the face reference.
FACESIM_CUR_CATEGORIES = ("singlehuman", "singleface", "faceobj", "humanobj")
FACESIM_CUR_FOLDERS = ("/man/", "/woman/", "/crop_woman/", "/crop_man/")


@dataclass(frozen=True)
class OpenS2VEntry:
    """One entry of an OpenS2V-Eval manifest, every reference kept.

    Fields:
        video_id: The entry's key, e.g. "faceobj_14"; the video must be named `<video_id>.mp4`.
        domain: "Human-Domain", "Open-Domain" or "Single-Domain".
        prompt: The entry's prompt, as written.
        images: Absolute paths of every reference image, in the manifest's order.
        class_labels: One label per image ("Man", "Cup", ...), as written.
        synthesis_flag: The manifest's flag ("wrong", "True", ...) or None when absent.
        image_paths: `img_paths` as written (relative), one per image; FaceSim-Cur's rule reads them.
    """

    video_id: str
    domain: str
    prompt: str
    images: tuple[str, ...]
    class_labels: tuple[str, ...]
    synthesis_flag: str | None = None
    image_paths: tuple[str, ...] = ()

    @property
    def face_cur_reference(self) -> str | None:
        """The image OpenS2V's FaceSim-Cur compares with, or None where it scores none.

        Its script scores only ids of its human categories (containing `singlehuman`, `singleface`,
        `faceobj` or `humanobj`) and takes the first image whose manifest path has a `/man/`,
        `/woman/`, `/crop_man/` or `/crop_woman/` folder; an entry with none is left out.
        """
        if not any(category in self.video_id for category in FACESIM_CUR_CATEGORIES):
            return None
        for written, image in zip(self.image_paths or self.images, self.images):
            if any(folder in written for folder in FACESIM_CUR_FOLDERS):
                return image
        return None

    @property
    def category(self) -> str:
        """The id's prefix ("singleface", "multiobject", ...): OpenS2V's scripts pick metrics by it."""
        return self.video_id.rsplit("_", 1)[0]

    @property
    def reference(self) -> str:
        """The image a single-reference method is given: the first (the person, where there is one)."""
        return self.images[0]

    @property
    def subject_class(self) -> str:
        """The first image's label, lower-cased ("man", "cup"): a human class gets Face Sim and the human prompt."""
        return self.class_labels[0].strip().lower()

    @property
    def multi_subject(self) -> bool:
        return len(self.images) > 1


def _unique_object(pairs: list[tuple[str, object]]) -> dict:
    """json object hook: a video id written twice is an error, not a silent overwrite."""
    seen: dict = {}
    duplicates = []
    for key, value in pairs:
        if key in seen:
            duplicates.append(key)
        seen[key] = value
    if duplicates:
        seen[_DUPLICATES] = duplicates
    return seen


def _domain_of(path: str, domain: str | None) -> str:
    named = MANIFEST_DOMAINS.get(storage.name(path))
    if domain is not None and domain not in OPENS2V_SETS:
        raise ValueError(f"`domain`={domain!r} is not an OpenS2V-Eval domain; choose from {list(OPENS2V_SETS)}.")
    if named and domain and named != domain:
        raise ValueError(
            f"OpenS2V manifest {path!r} is the {named} file but `domain`={domain!r} was given; "
            "leave `domain` out or give the matching manifest."
        )
    if not (named or domain):
        raise ValueError(
            f"OpenS2V manifest {path!r} is not named like one of {list(MANIFEST_DOMAINS)}; pass `domain` "
            f"(one of {list(OPENS2V_SETS)}) to say which domain it evaluates."
        )
    return named or domain


def _entry_problems(video_id: str, entry: object) -> list[str]:
    """What is wrong with one entry's shape (images are checked afterwards)."""
    if not isinstance(entry, dict):
        return [f"is {type(entry).__name__}, not an object with 'img_paths', 'prompt' and 'class_label'"]
    problems = [f"key(s) {entry.pop(_DUPLICATES)} written more than once; keep one of each"] if _DUPLICATES in entry else []
    if not video_id.strip() or any(ch in video_id for ch in "/\\") or video_id != video_id.strip():
        problems.append("the video id must be a non-empty name without path separators or surrounding spaces (it names <videoid>.mp4)")
    prompt = entry.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        problems.append("'prompt' must be a non-empty string")
    paths = entry.get("img_paths")
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p.strip() for p in paths):
        problems.append("'img_paths' must be a non-empty list of image paths (relative to the manifest's folder)")
    labels = entry.get("class_label")
    if not isinstance(labels, list) or not all(isinstance(label, str) and label.strip() for label in labels):
        problems.append("'class_label' must be a list of labels, one per image")
    elif isinstance(paths, list) and len(labels) != len(paths):
        problems.append(f"'class_label' has {len(labels)} label(s) for {len(paths)} image(s); give one label per image, in order")
    flag = entry.get("synthesis_flag")
    if flag is not None and not isinstance(flag, str):
        problems.append("'synthesis_flag' must be a string when present")
    return problems


def read_opens2v_manifest(
    manifest: str | Path, *, domain: str | None = None, image_root: str | Path | None = None, check_images: bool = True
) -> list[OpenS2VEntry]:
    """Every entry of an OpenS2V-Eval manifest, after checking all of them; raises listing every bad entry.

    Args:
        manifest: `Human-Domain_Eval.json`, `Open-Domain_Eval.json` or `Single-Domain_Eval.json`
            (local or object storage).
        domain: Needed only when the file is named otherwise; must agree with the name if given.
        image_root: The folder `img_paths` are relative to; default the manifest's folder (where
            OpenS2V-Eval keeps `Images/`).
        check_images: Check that every image (not only the first) exists and decodes.

    Raises:
        BenchmarkManifestError: Listing each bad entry by video id, what is wrong and the fix.
        ValueError: The domain cannot be told or contradicts the file name.
    """
    path = storage.absolute(manifest)
    domain = _domain_of(path, domain)
    try:
        data = json.loads(storage.read_text(path), object_pairs_hook=_unique_object)
    except FileNotFoundError:
        raise FileNotFoundError(f"OpenS2V manifest {path!r} does not exist; give the path of the downloaded *_Eval.json.") from None
    except json.JSONDecodeError as error:
        raise BenchmarkManifestError(path, [f"not valid JSON: {error}; re-download the file or fix it there"]) from None
    if not isinstance(data, dict):
        raise BenchmarkManifestError(path, [f"the top level is {type(data).__name__}; OpenS2V's format is an object of video id -> entry"])
    base = storage.absolute(image_root) if image_root is not None else storage.parent(path)
    problems = [f"video id {key!r} appears more than once; keep one entry per id" for key in data.pop(_DUPLICATES, [])]
    entries = []
    for video_id, entry in data.items():
        entry_problems = _entry_problems(video_id, entry)
        if not entry_problems:
            images = tuple(storage.join(base, p.strip()) if not storage.is_uri(p) else p for p in entry["img_paths"])
            if check_images:
                entry_problems += [problem for problem in (image_problem(image, "image") for image in images) if problem]
        if entry_problems:
            problems.append(f"entry {video_id!r}: " + "; ".join(entry_problems))
            continue
        written = tuple(p.strip() for p in entry["img_paths"])
        entries.append(
            OpenS2VEntry(video_id, domain, entry["prompt"], images, tuple(entry["class_label"]), entry.get("synthesis_flag"), written)
        )
    if not problems and not entries:
        problems.append("no entries")
    if problems:
        raise BenchmarkManifestError(path, problems)
    return entries


def opens2v_items(entries: Iterable[OpenS2VEntry], *, seeds: Iterable[int] = (0,)) -> list[BenchmarkItem]:
    """One `BenchmarkItem` per (entry, seed), in the manifest's order then the seeds' order.

    The subject is the video id in the domain's set (`OPENS2V_SETS`), its class the first label
    lower-cased, its reference the first image, its FaceSim-Cur reference OpenS2V's
    (`OpenS2VEntry.face_cur_reference`); the prompt is the entry's own, stripped of
    surrounding whitespace as every manifest value is. `prompt_index` is 0: each entry has one prompt.
    """
    seeds = [int(seed) for seed in seeds]
    if not seeds:
        raise ValueError("`seeds` is empty; give at least one seed (OpenS2V scores one video per id: one seed is its protocol).")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"`seeds` has repeats {seeds}; give each seed once.")
    items = []
    for entry in entries:
        # FaceSim-Cur follows OpenS2V's rule: "none" where its script scores none (metrics.records.NO_FACE_CUR)
        face_cur = entry.face_cur_reference or NO_FACE_CUR
        subject = BenchmarkSubject(entry.video_id, OPENS2V_SETS[entry.domain], entry.subject_class, entry.reference, face_cur)
        items += [BenchmarkItem(subject, 0, entry.prompt.strip(), seed) for seed in seeds]
    return items


def _video_id(item: BenchmarkItem | OpenS2VEntry) -> str:
    if isinstance(item, OpenS2VEntry):
        return item.video_id
    if item.subject.set not in SET_DOMAINS:
        raise ValueError(
            f"item {item.item_id!r} is of set {item.subject.set!r}, not an OpenS2V set {sorted(SET_DOMAINS)}; "
            "only items made by `opens2v_items` have an OpenS2V video id."
        )
    return item.subject.subject_id


def opens2v_video_name(item: BenchmarkItem | OpenS2VEntry) -> str:
    """`<videoid>.mp4`, the only name OpenS2V's scoring scripts accept for an entry's video."""
    return f"{_video_id(item)}.mp4"


def _item_mp4(videos_dir: str, item: BenchmarkItem) -> str | None:
    """The item's finished mp4 in an evaluation's `videos/` folder, or None (not made, or no mp4)."""
    from pipelines.evaluation.generation import is_complete, item_stem

    stem = item_stem(videos_dir, item)
    if not is_complete(stem):
        return None
    files = json.loads(storage.read_text(f"{stem}.json"))["files"]
    mp4 = [name for name in files if name.endswith(".mp4")]
    return storage.join(storage.parent(stem), mp4[0]) if mp4 else None


def export_opens2v_videos(
    items: list[BenchmarkItem],
    entries: list[OpenS2VEntry],
    videos_dir: str | Path,
    output_dir: str | Path,
    *,
    seed: int | None = None,
    allow_missing: bool = False,
) -> dict:
    """Copy an evaluation's videos into a folder of `<videoid>.mp4`, the layout OpenS2V's scripts score.

    Args:
        items: The evaluation's items (`opens2v_items`); other sets are ignored.
        entries: The manifest's entries, for the record of which reference each video used.
        videos_dir: The evaluation's `videos/` folder.
        output_dir: Where `<videoid>.mp4` and `opens2v_export.json` go (local or object storage).
        seed: Which seed's video to export when items have several (OpenS2V takes one per id).
        allow_missing: Export what exists when some videos are missing (listed in the record);
            by default a missing video is an error and nothing is copied.

    Returns:
        The record also written as `opens2v_export.json`: per video id the item, seed, source
        file, the reference used and the references not used; plus `missing`.
    """
    videos_dir, output_dir = storage.absolute(videos_dir), storage.absolute(output_dir)
    by_id = {entry.video_id: entry for entry in entries}
    chosen: dict[str, BenchmarkItem] = {}
    seeds: dict[str, list[int]] = {}
    for item in items:
        if item.subject.set not in SET_DOMAINS:
            continue
        seeds.setdefault(item.subject.subject_id, []).append(item.seed)
        if seed is None or item.seed == seed:
            chosen.setdefault(item.subject.subject_id, item)
    several = sorted(video_id for video_id, values in seeds.items() if len(values) > 1)
    if several and seed is None:
        raise ValueError(
            f"{len(several)} video id(s) have several seeds (e.g. {several[0]!r}: {seeds[several[0]]}); OpenS2V scores one "
            "video per id: pass `seed` to choose which."
        )
    if not chosen:
        raise ValueError(f"`items` hold no OpenS2V item{'' if seed is None else f' of seed {seed}'}; make them with `opens2v_items`.")
    unknown = sorted(set(chosen) - set(by_id))
    if unknown:
        raise ValueError(f"`entries` lack the video id(s) {unknown[:5]}; pass the entries of the manifest the items were made from.")
    sources, missing = {}, []
    for video_id, item in chosen.items():
        source = _item_mp4(videos_dir, item)
        if source is None:
            missing.append(f"{video_id} ({item.item_id}: no finished .mp4 under {videos_dir!r})")
        else:
            sources[video_id] = source
    if missing and not allow_missing:
        listing = "\n  ".join(missing)
        raise ValueError(
            f"{len(missing)} video(s) to export are missing; generate them (re-running the evaluation resumes), "
            f"or pass allow_missing=True:\n  {listing}"
        )
    record = {"videos": {}, "missing": missing}
    for video_id, source in sources.items():
        item, entry = chosen[video_id], by_id[video_id]
        storage.write_bytes(storage.join(output_dir, opens2v_video_name(item)), storage.read_bytes(source))
        record["videos"][video_id] = {
            "item_id": item.item_id,
            "seed": item.seed,
            "source": source,
            "reference_used": item.subject.reference,
            "references_not_used": list(entry.images[1:]),
        }
    storage.write_text(storage.join(output_dir, EXPORT_RECORD), json.dumps(record, indent=2))
    return record


def write_opens2v_import_manifest(items: list[BenchmarkItem], folder: str | Path, manifest: str | Path) -> list[str]:
    """An import manifest (`method.videos`) for a folder of `<videoid>.mp4`, e.g. another model's OpenS2V outputs.

    Each OpenS2V item whose `<videoid>.mp4` is in `folder` gets a row (set, subject_id, prompt, seed,
    video), so an `imported` evaluation scores those videos like generated ones, with no renaming.
    Written as JSON Lines: OpenS2V prompts hold newlines. Returns the video ids not found.

    Raises:
        ValueError: `manifest` does not end in `.jsonl`, or no item's video is in `folder`.
    """
    manifest = storage.absolute(manifest)
    if not manifest.endswith(".jsonl"):
        raise ValueError(f"`manifest` {manifest!r} must end in .jsonl (prompts hold newlines, which CSV rows here cannot).")
    folder = storage.absolute(folder)
    rows, absent = [], []
    for item in items:
        video = storage.join(folder, opens2v_video_name(item))
        if storage.size(video) is None:
            absent.append(item.subject.subject_id)
            continue
        rows.append(
            {"set": item.subject.set, "subject_id": item.subject.subject_id, "prompt": item.prompt, "seed": item.seed, "video": video}
        )
    if not rows:
        raise ValueError(f"none of the {len(items)} items has its <videoid>.mp4 in {folder!r}; is that the folder of OpenS2V-named videos?")
    storage.write_text(manifest, "".join(json.dumps(row) + "\n" for row in rows))
    return absent


def is_opens2v_manifest(benchmark: str | Path) -> bool:
    """Whether a benchmark is one of OpenS2V-Eval's manifests (by its file name, as OpenS2V names them)."""
    return storage.name(str(benchmark)) in MANIFEST_DOMAINS


def write_opens2v_outputs(
    items: list[BenchmarkItem], entries: list[OpenS2VEntry], records: list[dict], videos_dir: str, output_dir: str, run_name: str
) -> dict[str, dict[str, float]]:
    """An OpenS2V evaluation's results in OpenS2V's own files, under `output_dir` (an evaluation's `scores/opens2v`):

    - `videos/<videoid>.mp4` (the first seed's; `opens2v_export.json` says which file, reference and
      what is missing) for OpenS2V's own scripts;
    - per version `v1.0/`, `v1.1/`: the per-metric score files of the metrics this run computed, keyed
      by video id, and `<run_name>_<domain>.json`, the merge's result, both of the exported seed's
      videos (OpenS2V scores one per id); a sub-score no video has counts as absent, as OpenS2V's
      merge counts it, and `counted_videos.json` says how many videos each sub-score rests on.

    Returns {version: result} per domain set of the run (a run holds one manifest's domain).
    """
    import tempfile

    from metrics.opens2v import (
        VERSIONS,
        counted_videos,
        per_video_values,
        result_file_name,
        total_score,
        write_result_json,
        write_score_files,
    )

    first_seed = min(item.seed for item in items)
    export_opens2v_videos(items, entries, videos_dir, storage.join(output_dir, "videos"), seed=first_seed, allow_missing=True)
    results: dict[str, dict[str, float]] = {}
    set_names = sorted({item.subject.set for item in items} & set(SET_DOMAINS))
    for set_name in set_names:
        domain = SET_DOMAINS[set_name]
        for version in VERSIONS:
            values = per_video_values(records, set_name=set_name, version=version, seed=first_seed)
            if not any(values.values()):  # no OpenS2V metric was computed: a total of absent sub-scores means nothing
                continue
            result = total_score(values, domain=domain, version=version)
            results[version] = result
            with tempfile.TemporaryDirectory(prefix="videomaker-opens2v-") as scratch:  # local writers; the output may be a URI
                files = write_score_files(scratch, values, version=version)
                files.append(write_result_json(Path(scratch) / result_file_name(run_name or "run", domain), result))
                counts = Path(scratch) / "counted_videos.json"
                counts.write_text(json.dumps(counted_videos(values, version=version), indent=2))
                files.append(counts)
                for file in files:
                    storage.upload_file(file, storage.join(output_dir, version, file.name))
    return results
