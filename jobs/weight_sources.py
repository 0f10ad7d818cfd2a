"""Which weights the job configs name, and where each is published (the input of model staging)."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, replace
from pathlib import Path

KINDS = ("hf-repo", "hf-file", "url", "torchvision", "open_clip", "local")
# Weights of other frameworks and precisions that hub repos often carry beside the PyTorch ones.
IGNORED_HUB_FILES = ("*.msgpack", "*.h5", "*.ot", "*.onnx", "*.ckpt", "*.fp16.*")
# The SD1.5 components `videomaker.loading` reads from a preset's `base_model` (the scheduler's
# stored config too: the sampler takes every field the release overrides do not set from it).
SD15_COMPONENTS = ("model_index.json", "unet/*", "vae/*", "text_encoder/*", "tokenizer/*", "scheduler/*")
# The authors' released VideoMaker weights (`videomaker models stage --released`), by staged name.
RELEASED_WEIGHTS = {"videomaker-human": "SugerWu/VideoMaker/human_pytorch_model.bin",
                    "videomaker-object": "SugerWu/VideoMaker/object_pytorch_model.bin"}
HF_FILE_PREFIX = "hf:"
# Files configs name by where they will be staged, and where they are published.
SAM_CHECKPOINTS = ("sam_vit_h_4b8939.pth", "sam_vit_l_0b3195.pth", "sam_vit_b_01ec64.pth")
SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"  # segment-anything's README
GROUNDING_DINO_REPOS = ("IDEA-Research/grounding-dino-tiny", "IDEA-Research/grounding-dino-base")
INSIGHTFACE_PACKS = ("buffalo_l", "buffalo_m", "buffalo_s", "antelopev2")


@dataclass(frozen=True)
class WeightSource:
    """One weight a job reads and where it comes from.

    Args:
        name: Folder of the staged copy and its label ("clip", "sam", ...).
        kind: How it is fetched: `hf-repo` (hub repo id), `hf-file` (one file of a hub repo,
            "OWNER/REPO/FILE"), `url`, `torchvision` (a `Raft_Large_Weights` tag), `open_clip`
            ("MODEL:TAG"), or `local` (a file or directory, copied).
        source: The repo id, repo file, URL, tag or path.
        allow_patterns: Files of an `hf-repo` to fetch; None fetches all but other frameworks' weights.
        aliases: Other spellings configs use for the same weight (e.g. the path it is staged for).
    """

    name: str
    kind: str
    source: str
    allow_patterns: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Invalid WeightSource(kind={self.kind!r}) for {self.name!r}; choose from {list(KINDS)}.")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ValueError(f"Invalid WeightSource(name={self.name!r}): use letters, digits, '.', '_', '-' (it names a folder).")



# --- which weights the configs name ----------------------------------------------------------


def weights_named_by(configs: list[dict]) -> list[WeightSource]:
    """Every weight the given job configs (YAML loaded) or preset JSONs read, each listed once.

    Defaults of the job config dataclasses apply where a config leaves a field out, so a score
    config without `backends` names the published metric weights.

    Example:
        >>> [w.name for w in weights_named_by([{"preset": "paper"}])]
        ['diffusion-backbone', 'motion-adapter']
    """
    found: list[WeightSource] = []
    for config in configs:
        if not isinstance(config, dict):
            raise TypeError(f"`configs` must hold dicts (loaded YAML or JSON), got {type(config).__name__}.")
        found += _preset_weights(config) + _metric_weights(config) + _preprocess_weights(config) + _method_weights(config)
    return _merged(found)


def _preset_weights(config: dict) -> list[WeightSource]:
    from pipelines.preprocess.config import PreprocessConfig
    from videomaker.presets import load_preset

    pairs = []
    if config.get("base_model"):  # a preset JSON itself
        pairs.append((config["base_model"], config["motion_adapter"]))
    names = [config.get("preset")]
    if config.get("encode_latents"):
        names.append(config.get("latent_preset", PreprocessConfig.latent_preset))
    for name in filter(None, names):
        preset = load_preset(name)
        if not preset.is_random_init:
            pairs.append((preset.base_model, preset.motion_adapter))
    return [weight for base, motion in pairs for weight in (
        _weight_at("diffusion-backbone", base, hub=True, patterns=SD15_COMPONENTS),
        _weight_at("motion-adapter", motion, hub=True),
    )]


def _metric_weights(config: dict) -> list[WeightSource]:
    if not {"backends", "scorers", "method"} & set(config):  # only scoring and evaluation jobs load metric models
        return []
    from metrics.backends import MetricBackendsConfig
    from metrics.backends.clip import OpenCLIPEmbedder
    from metrics.backends.dino import DINOEmbedder
    from metrics.backends.flow import RAFTFlow

    backends = MetricBackendsConfig(**(config.get("backends") or {}))
    weights = []
    clip = backends.clip.options
    model, pretrained = _option(OpenCLIPEmbedder, clip, "model"), _option(OpenCLIPEmbedder, clip, "pretrained")
    if model.startswith("hf-hub:"):
        weights.append(WeightSource("clip", "hf-repo", model.removeprefix("hf-hub:")))
    elif model.startswith("local-dir:"):
        weights.append(WeightSource("clip", "local", model.removeprefix("local-dir:")))
    elif Path(pretrained).expanduser().is_file():
        weights.append(WeightSource("clip", "local", pretrained))
    else:
        weights.append(WeightSource("clip", "open_clip", f"{model}:{pretrained}"))
    weights.append(_weight_at("dino", _option(DINOEmbedder, backends.dino.options, "model"), hub=True))
    if backends.face is not None:
        weights.append(_weight_at("insightface", _required(backends.face.options, "model_dir", "backends.face.options"), hub=False))
    if backends.flow.name == "raft":
        raft_weights = _option(RAFTFlow, backends.flow.options, "weights")  # a state dict file or a Raft_Large_Weights tag
        weights.append(WeightSource("raft", "local" if Path(raft_weights).expanduser().exists() else "torchvision", raft_weights))
    return weights


# Preprocess backend name -> (weight name, option holding its weights, whether it may be a hub id).
PREPROCESS_WEIGHTS = {
    "insightface": ("insightface", "model_dir", False),
    "grounding-dino": ("detector", "model_id_or_dir", True),
    "sam": ("sam", "checkpoint_path", False),
}


def _preprocess_weights(config: dict) -> list[WeightSource]:
    weights = []
    for role in ("face_detector", "object_detector", "segmenter"):
        if role not in config:
            continue  # the PreprocessConfig defaults are the weight-free backends
        backend = config[role] or {}
        if backend.get("name") in PREPROCESS_WEIGHTS:
            name, option, hub = PREPROCESS_WEIGHTS[backend["name"]]
            weights.append(_weight_at(name, _required(backend.get("options") or {}, option, f"{role}.options"), hub=hub))
    return weights


def _method_weights(config: dict) -> list[WeightSource]:
    if "method" not in config:
        return []
    from pipelines.evaluation.config import MethodConfig

    method = config["method"] or {}
    kind = method.get("kind", MethodConfig.kind)
    weights = _preset_weights({"preset": method.get("preset", MethodConfig.preset)})
    checkpoint = method.get("checkpoint")
    if isinstance(checkpoint, str) and checkpoint.startswith(HF_FILE_PREFIX):
        weights.append(hf_file_weight(checkpoint))
    if kind.startswith("ip-adapter"):
        # Imports diffusers (seconds), so only when a baseline is named.
        from videomaker.baselines import DEFAULT_SOURCES

        default = DEFAULT_SOURCES[kind]
        subfolder = default.subfolder if method.get("subfolder") is None else method["subfolder"]
        weight_name = method.get("weight_name") or default.weight_name
        encoder = method.get("image_encoder_folder") or default.image_encoder_folder
        prefix = f"{subfolder}/" if subfolder else ""
        patterns = (f"{prefix}{weight_name}",) + ((f"{encoder if '/' in encoder else prefix + encoder}/*",) if encoder else ())
        patterns += (f"{prefix}{method['lora_weight_name']}",) if method.get("lora_weight_name") else ()  # FaceID's kohya LoRA
        weights.append(_weight_at(kind, method.get("weights") or default.weights, hub=True, patterns=patterns))
        if method.get("motion_adapter"):  # the baselines' own motion adapter (the author's: v1-5-2)
            weights.append(_weight_at("baseline-motion-adapter", method["motion_adapter"], hub=True))
    if (method.get("face") or {}).get("name") == "insightface":
        weights.append(_weight_at("insightface", _required(method["face"].get("options") or {}, "model_dir", "method.face.options"), hub=False))
    return weights


def hf_file_weight(uri: str, name: str | None = None) -> WeightSource:
    """The weight an `hf:OWNER/REPO/FILE` URI names (a released checkpoint), staged under `name`.

    Example:
        >>> hf_file_weight("hf:SugerWu/VideoMaker/human_pytorch_model.bin").name
        'videomaker-human'
    """
    source = uri.removeprefix(HF_FILE_PREFIX)
    if len(source.split("/")) < 3 or not all(source.split("/")):
        raise ValueError(f"{uri!r} is not a hub file URI: write hf:OWNER/REPO/FILE, e.g. hf:{RELEASED_WEIGHTS['videomaker-human']}.")
    known = {value: key for key, value in RELEASED_WEIGHTS.items()}
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", source.split("/")[-1].split(".")[0])
    return WeightSource(name or known.get(source, f"checkpoint-{stem}"), "hf-file", source, aliases=(f"{HF_FILE_PREFIX}{source}",))


def released_weights() -> list[WeightSource]:
    """Both released VideoMaker files (human, object) as weights to stage."""
    return [hf_file_weight(HF_FILE_PREFIX + source, name) for name, source in RELEASED_WEIGHTS.items()]


def _weight_at(name: str, value: str, *, hub: bool, patterns: tuple[str, ...] | None = None) -> WeightSource:
    """A config value naming a path or hub id: a present path as is, a known file by where it is published."""
    path = Path(value).expanduser()
    if path.exists():
        return WeightSource(name, "local", value)
    published = _published(path.name)
    if published is not None:
        kind, source = published
        return WeightSource(name, kind, source, patterns if kind == "hf-repo" else None, aliases=(value,))
    if hub and re.fullmatch(r"[\w-][\w.-]*/[\w.-]+", value):
        return WeightSource(name, "hf-repo", value, patterns)
    return WeightSource(name, "local", value)  # not there yet: staging says where it was looked for


def _published(basename: str) -> tuple[str, str] | None:
    if basename in SAM_CHECKPOINTS:
        return "url", SAM_URL + basename
    repos = {repo.split("/")[1]: repo for repo in GROUNDING_DINO_REPOS}
    if basename in repos:
        return "hf-repo", repos[basename]
    if basename in INSIGHTFACE_PACKS:
        from insightface.utils.storage import model_zoo_download_url

        return "url", model_zoo_download_url(f"{basename}.zip")
    return None


def _merged(found: list[WeightSource]) -> list[WeightSource]:
    """One entry per (kind, source), fetching every file any config needs from it; the same role
    from another source gets a numbered name."""
    merged: dict[tuple[str, str], WeightSource] = {}
    for weight in found:
        key = (weight.kind, weight.source)
        if key in merged:
            known = merged[key]
            patterns = None if None in (known.allow_patterns, weight.allow_patterns) else tuple(
                dict.fromkeys(known.allow_patterns + weight.allow_patterns))
            aliases = tuple(dict.fromkeys(a for a in (*known.aliases, *weight.aliases) if a != known.source))
            merged[key] = replace(known, allow_patterns=patterns, aliases=aliases)
            continue
        taken = {w.name for w in merged.values()}
        name = next(n for n in (weight.name, *(f"{weight.name}-{i}" for i in range(2, 100))) if n not in taken)
        merged[key] = replace(weight, name=name, aliases=tuple(a for a in weight.aliases if a != weight.source))
    return list(merged.values())


def _option(cls: type, options: dict, key: str):
    return options.get(key, inspect.signature(cls).parameters[key].default)


def _required(options: dict, key: str, where: str) -> str:
    if not options.get(key):
        raise ValueError(f"`{where}.{key}` is not set; the backend needs it to find its weights.")
    return str(options[key])


def with_source_overrides(sources: list[WeightSource], overrides: dict[str, str]) -> list[WeightSource]:
    """Sources with some replaced (or added) by NAME -> path, URL or hub id; a replaced source stays an alias.

    This is how a weight fetched by hand (or on a shared filesystem) is staged: its jobs still
    resolve the hub id or URL their configs name to the staged copy.
    """
    by_name = {source.name: source for source in sources}
    for name, value in overrides.items():
        if Path(value).expanduser().exists():
            kind = "local"
        elif value.startswith(HF_FILE_PREFIX):
            kind, value = "hf-file", value.removeprefix(HF_FILE_PREFIX)
        elif value.startswith(("http://", "https://")):
            kind = "url"
        elif re.fullmatch(r"[\w-][\w.-]*/[\w.-]+", value):
            kind = "hf-repo"
        else:
            raise ValueError(f"`--source {name}={value}`: {value!r} is neither an existing path, a URL nor a hub repo id.")
        old = by_name.get(name)
        if old is None:
            by_name[name] = WeightSource(name, kind, value)
            continue
        aliases = tuple(dict.fromkeys(a for a in (old.source, *old.aliases) if a != value))
        patterns = old.allow_patterns if kind == old.kind == "hf-repo" else None
        by_name[name] = WeightSource(name, kind, value, patterns, aliases)
    return list(by_name.values())
