"""Model staging for offline clusters: every weight the job configs name, in one checked directory.

A staged directory holds each weight under `<name>/` and a `MANIFEST.json` with the size and
SHA-256 of every file and the source (hub id, URL, torchvision tag, path) each weight stands for,
so a cluster without internet can check its copy and jobs can read weights from it.

Which weights the configs name is worked out in `jobs/weight_sources.py`.

Example:
    >>> configs = [yaml.safe_load(path.read_text()) for path in Path("jobs/configs").glob("*.yaml")]
    >>> stage(weights_named_by(configs), "/shared/models")
    >>> verify("/shared/models").ok
    True
    >>> resolve_weight("facebook/dino-vits16", "/shared/models")
    '/shared/models/dino'
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import shutil
import urllib.parse
import urllib.request
import zipfile
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from tqdm.auto import tqdm

from jobs.weight_sources import IGNORED_HUB_FILES, WeightSource
from metrics.backends.registry import BackendSpec

logger = logging.getLogger(__name__)

T = TypeVar("T")

MANIFEST_FILE = "MANIFEST.json"
FORMAT_VERSION = 1


class StagingError(OSError):
    """A weight could not be fetched or copied; the message says how to stage it by hand."""


@dataclass(frozen=True)
class StagedFile:
    """A file of a staged weight; `path` is relative to the weight's `<name>/` folder."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class StagedWeight:
    """A manifest entry; `path` (relative to the staged directory) is what jobs read."""

    name: str
    kind: str
    source: str
    path: str
    files: tuple[StagedFile, ...]
    aliases: tuple[str, ...] = ()


@dataclass
class Manifest:
    """The contents of MANIFEST.json."""

    weights: list[StagedWeight]
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        record = {"format_version": self.format_version, "created": self.created, "weights": [asdict(weight) for weight in self.weights]}
        return json.dumps(record, indent=2) + "\n"


@dataclass
class VerificationReport:
    """What `verify` found: problems (missing or changed files) fail it, warnings (extra files) do not."""

    directory: str
    problems: list[str]
    warnings: list[str]
    weights: int
    files_checked: int

    @property
    def ok(self) -> bool:
        return not self.problems


# --- stage -----------------------------------------------------------------------------------


def stage(sources: list[WeightSource], directory: str | Path, *, progress: bool = True, timeout_s: float = 60.0) -> Manifest:
    """Fetch each weight into `directory/<name>/` and write `directory/MANIFEST.json`.

    A weight whose staged files (and, for a local source, whose source files) still match the
    manifest is skipped. Every weight is tried; those that fail are listed in one `StagingError`
    raised after the manifest of the others is written.

    Args:
        sources: From `weights_named_by` (or hand-made, e.g. `WeightSource("sam", "local", path)`).
        directory: The staged directory; created if needed, other weights in it are kept.
        progress: Show progress bars over downloads and files.
        timeout_s: Network timeout of each connection.
    """
    names = [source.name for source in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"`sources` must have distinct names, got {names}.")
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    staged = {w.name: w for w in read_staged_manifest(directory).weights} if (directory / MANIFEST_FILE).exists() else {}
    failures = []
    for source in sources:
        previous = staged.get(source.name)
        if previous is not None and _still_complete(previous, source, directory, progress):
            logger.info("%s: already staged from %s, skipped", source.name, source.source)
            staged[source.name] = replace(previous, aliases=source.aliases)
            continue
        try:
            staged[source.name] = _stage_one(source, directory, progress=progress, timeout_s=timeout_s)
        except Exception as error:  # noqa: BLE001 - one weight's failure is reported with the others'
            failures.append(_failure(source, error))
    manifest = Manifest(weights=list(staged.values()))
    (directory / MANIFEST_FILE).write_text(manifest.to_json())
    if failures:
        raise StagingError("\n".join(failures))
    return manifest


def _still_complete(previous: StagedWeight, source: WeightSource, directory: Path, progress: bool) -> bool:
    if (previous.kind, previous.source) != (source.kind, source.source) or not (directory / previous.name).is_dir():
        return False
    if _describe(directory / previous.name, progress) != previous.files:
        return False
    return source.kind != "local" or _describe(Path(source.source).expanduser(), progress) == previous.files


def _stage_one(source: WeightSource, directory: Path, *, progress: bool, timeout_s: float) -> StagedWeight:
    """Fetch into a `.partial` folder, checksum it, then move it into place."""
    partial = directory / f".{source.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        inner = FETCHERS[source.kind](source, partial, progress=progress, timeout_s=timeout_s)
        shutil.rmtree(partial / ".cache", ignore_errors=True)  # huggingface_hub's download metadata
        files = _describe(partial, progress)
        if not files:
            raise StagingError(
                f"fetching {source.source!r} gave no files"
                + (f" (allow_patterns={list(source.allow_patterns)})" if source.allow_patterns else "")
            )
        final = directory / source.name
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    path = f"{source.name}/{inner}" if inner else source.name
    logger.info("%s: staged %d files from %s", source.name, len(files), source.source)
    return StagedWeight(source.name, source.kind, source.source, path, files, source.aliases)


def _failure(source: WeightSource, error: Exception) -> str:
    model, _, tag = source.source.partition(":")
    fetch = {
        "hf-repo": f"run `hf download {source.source}"
        + "".join(f' --include "{p}"' for p in source.allow_patterns or ())
        + " --local-dir COPY`",
        "hf-file": f"run `hf download {'/'.join(source.source.split('/')[:2])} {source.source.split('/', 2)[-1]} --local-dir COPY`",
        "url": f"download {source.source}" + (" and unzip it into COPY" if source.source.endswith(".zip") else " as COPY"),
        "torchvision": f"save the file at torchvision's `Raft_Large_Weights.{source.source}.url` as COPY",
        "open_clip": f"download the weights that `open_clip.get_pretrained_cfg({model!r}, {tag!r})` points to as COPY",
    }
    how = (
        f"on a machine with internet {fetch[source.kind]}, copy COPY to this machine"
        if source.kind in fetch
        else f"put the file or directory at {source.source!r}, or anywhere as COPY,"
    )
    return (
        f"Could not stage {source.name!r} from {source.kind} {source.source!r}: {type(error).__name__}: {error}\n"
        f"  To stage it by hand: {how} and re-run with `--source {source.name}=COPY` (a local source is copied and "
        f"checksummed like a download)."
    )


def _fetch_local(source: WeightSource, target: Path, **_) -> str:
    origin = Path(source.source).expanduser()
    if origin.is_dir():
        shutil.copytree(origin, target, dirs_exist_ok=True)
        return ""
    if not origin.is_file():
        raise FileNotFoundError(f"{str(origin)!r} is neither a file nor a directory")
    shutil.copy2(origin, target / origin.name)
    return origin.name


def _fetch_hf_repo(source: WeightSource, target: Path, *, timeout_s: float, **_) -> str:
    from huggingface_hub import snapshot_download

    snapshot_download(
        source.source,
        local_dir=target,
        allow_patterns=list(source.allow_patterns or ()) or None,
        ignore_patterns=list(IGNORED_HUB_FILES),
        etag_timeout=timeout_s,
    )
    return ""


def _fetch_hf_file(source: WeightSource, target: Path, *, timeout_s: float, **_) -> str:
    """One file of a hub repo ("OWNER/REPO/FILE"), through the hub cache (so HF_HUB_OFFLINE=1 reads a cached copy)."""
    from huggingface_hub import hf_hub_download

    owner, repo, filename = source.source.split("/", 2)
    cached = Path(hf_hub_download(f"{owner}/{repo}", filename, etag_timeout=timeout_s))
    shutil.copy2(cached, target / Path(filename).name)
    return Path(filename).name


def _fetch_url(source: WeightSource, target: Path, *, progress: bool, timeout_s: float) -> str:
    """Download a file; a `.zip` is unpacked and its single top-level entry (if any) is the weight."""
    filename = Path(urllib.parse.urlparse(source.source).path).name or "download"
    file = target / filename
    with (
        urllib.request.urlopen(source.source, timeout=timeout_s) as response,
        open(file, "wb") as out,
        tqdm(
            total=int(response.headers.get("Content-Length") or 0) or None,
            unit="B",
            unit_scale=True,
            desc=f"download {filename}",
            disable=not progress,
        ) as bar,
    ):
        while chunk := response.read(1 << 20):
            out.write(chunk)
            bar.update(len(chunk))
    if not zipfile.is_zipfile(file):
        return filename
    with zipfile.ZipFile(file) as archive:
        archive.extractall(target)
    file.unlink()
    entries = [entry.name for entry in target.iterdir() if entry.name != ".cache"]
    return entries[0] if len(entries) == 1 else ""


def _fetch_torchvision(source: WeightSource, target: Path, **kwargs) -> str:
    from torchvision.models.optical_flow import Raft_Large_Weights

    if source.source not in Raft_Large_Weights.__members__:
        raise ValueError(f"{source.source!r} is not a Raft_Large_Weights tag; choose from {list(Raft_Large_Weights.__members__)}")
    return _fetch_url(replace(source, kind="url", source=Raft_Large_Weights[source.source].url), target, **kwargs)


def _fetch_open_clip(source: WeightSource, target: Path, **kwargs) -> str:
    """What open_clip itself downloads (the hub copy when it has one); a hub copy loads as `local-dir:`."""
    import open_clip

    model, _, tag = source.source.partition(":")
    config = open_clip.get_pretrained_cfg(model, tag)
    if not config:
        raise ValueError(f"{source.source!r} is not MODEL:TAG of an open_clip pretrained model (`open_clip.list_pretrained()`)")
    if not config.get("hf_hub"):
        return _fetch_url(replace(source, kind="url", source=config["url"]), target, **kwargs)
    from huggingface_hub import list_repo_files

    repo, filename = posixpath.split(config["hf_hub"])  # "org/name/" or "org/name/file", as open_clip reads it
    if not filename:
        available = set(list_repo_files(repo))
        filename = next((f for f in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin") if f in available), "")
    patterns = ("open_clip_config.json", filename) if filename else ("open_clip_config.json", "open_clip_*")
    return _fetch_hf_repo(replace(source, kind="hf-repo", source=repo, allow_patterns=patterns), target, **kwargs)


FETCHERS = {
    "local": _fetch_local,
    "hf-repo": _fetch_hf_repo,
    "hf-file": _fetch_hf_file,
    "url": _fetch_url,
    "torchvision": _fetch_torchvision,
    "open_clip": _fetch_open_clip,
}


def _describe(root: Path, progress: bool) -> tuple[StagedFile, ...]:
    """Size and SHA-256 of every file under `root` (or of `root` itself when it is a file)."""
    if not root.exists():
        return ()
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return tuple(
        StagedFile(path.name if path == root else path.relative_to(root).as_posix(), path.stat().st_size, _sha256(path))
        for path in tqdm(paths, desc=f"checksum {root.name}", unit="file", disable=not progress)
    )


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


# --- verify and read -------------------------------------------------------------------------


def read_staged_manifest(directory: str | Path) -> Manifest:
    """The manifest of a staged directory; a missing or unreadable one is an error that says what to do."""
    path = Path(directory).expanduser() / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} not found: {str(directory)!r} is not a staged models directory. Stage one with "
            f"`videomaker models stage {directory}`."
        )
    try:
        record = json.loads(path.read_text())
        if record.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format_version {record.get('format_version')!r}, expected {FORMAT_VERSION}")
        weights = [
            StagedWeight(
                w["name"], w["kind"], w["source"], w["path"], tuple(StagedFile(**f) for f in w["files"]), tuple(w.get("aliases", ()))
            )
            for w in record["weights"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{str(path)!r} is not a readable staging manifest ({type(error).__name__}: {error}); re-stage with "
            f"`videomaker models stage {directory}`."
        ) from error
    return Manifest(weights=weights, created=record.get("created", ""), format_version=record["format_version"])


def verify(directory: str | Path, *, progress: bool = False) -> VerificationReport:
    """Check every file of MANIFEST.json for presence, size and SHA-256; list files it does not name."""
    directory = Path(directory).expanduser()
    manifest = read_staged_manifest(directory)
    hint = f"re-run `videomaker models stage {directory}` with the configs it was staged from"
    problems, expected = [], {MANIFEST_FILE}
    files = [(weight, file) for weight in manifest.weights for file in weight.files]
    for weight, file in tqdm(files, desc="verify", unit="file", disable=not progress):
        relative = f"{weight.name}/{file.path}"
        expected.add(relative)
        path = directory / relative
        if not path.is_file():
            problems.append(f"missing: {relative} (expected {file.size} bytes); {hint}")
        elif (size := path.stat().st_size) != file.size:
            problems.append(f"size mismatch: {relative} is {size} bytes, expected {file.size}; {hint}")
        elif (digest := _sha256(path)) != file.sha256:
            problems.append(f"checksum mismatch: {relative} has sha256 {digest}, expected {file.sha256}; {hint}")
    present = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    warnings = [f"not in the manifest: {relative}" for relative in present if relative not in expected]
    return VerificationReport(str(directory), problems, warnings, len(manifest.weights), len(files))


def resolve_weight(source: str, models_dir: str | Path | None) -> str:
    """Where a job reads the weight a config names: its staged copy, or `source` itself without `models_dir`.

    Example:
        >>> resolve_weight("IDEA-Research/grounding-dino-tiny", "/shared/models")
        '/shared/models/detector'
    """
    if models_dir is None:
        return source
    directory = Path(models_dir).expanduser()
    manifest = read_staged_manifest(directory)
    for weight in manifest.weights:
        if source == weight.source or source in weight.aliases:
            return str(directory / weight.path)
    raise ValueError(
        f"`source` {source!r} is not staged in {str(models_dir)!r} (staged: {[w.source for w in manifest.weights]}); "
        f"stage it with `videomaker models stage {models_dir} --config CONFIG` or `--source NAME={source}`."
    )


def use_staged_weights(config: T, models_dir: str | Path | None) -> T:
    """`config` with every weight it names that is staged in `models_dir` read from the staged copy.

    Hub ids, URLs, torchvision tags and paths anywhere in the config (defaults included) that a
    manifest entry stands for are replaced by its path; an open_clip `model` + `pretrained` pair
    becomes `local-dir:` (or the staged weight file). Other values are left as they are.

    Example:
        >>> config = use_staged_weights(load_config(EvaluationConfig, "jobs/configs/eval_paper.yaml"), "/shared/models")
        >>> config.backends.dino.options["model"]
        '/shared/models/dino'
    """
    if models_dir is None:
        return config
    directory = Path(models_dir).expanduser()
    staged = {}
    for weight in read_staged_manifest(directory).weights:
        for name in (weight.source, *weight.aliases):
            staged[name] = str(directory / weight.path)
    return _replace_staged(config, staged)


def _replace_staged(value, staged: dict[str, str]):
    if is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _replace_staged(getattr(value, f.name), staged) for f in fields(value) if f.init}
        if isinstance(value, BackendSpec) and isinstance(changes.get("options"), dict):
            changes["options"] = _staged_backend_options(value.name, changes["options"], staged)
        return replace(value, **changes)
    if isinstance(value, dict):
        return {key: _replace_staged(item, staged) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_staged(item, staged) for item in value]
    if isinstance(value, str):
        return staged.get(value, value)
    return value


def _staged_backend_options(name: str, options: dict, staged: dict[str, str]) -> dict:
    """A backend's options as its class rewrites them for staged copies (`staged_options`), when it does;
    e.g. open_clip's MODEL:TAG pair, which no single option value spells."""
    from metrics.backends import METRIC_BACKENDS
    from pipelines.preprocess.backends import SHP_BACKENDS

    for cls in (*METRIC_BACKENDS.classes_named(name), *SHP_BACKENDS.classes_named(name)):
        if hasattr(cls, "staged_options"):
            options = cls.staged_options(options, staged)
    return options
