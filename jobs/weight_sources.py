"""Which weights the job configs name, and where each is published (the input of model staging).

Each backend declares its own weights (`weights(options)` on its class, see
`metrics.backends.registry.BackendRegistry.weights`); here the configs are walked and the backends asked.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from metrics.backends.registry import WeightSource, weight_at

# Weights of other frameworks and precisions that hub repos often carry beside the PyTorch ones.
IGNORED_HUB_FILES = ("*.msgpack", "*.h5", "*.ot", "*.onnx", "*.ckpt", "*.fp16.*")
# The SD1.5 components `videomaker.loading` reads from a preset's `base_model` (the scheduler's
# stored config too: the sampler takes every field the release overrides do not set from it).
SD15_COMPONENTS = ("model_index.json", "unet/*", "vae/*", "text_encoder/*", "tokenizer/*", "scheduler/*")
# The authors' released VideoMaker weights (`videomaker models stage --released`), by staged name.
RELEASED_WEIGHTS = {
    "videomaker-human": "SugerWu/VideoMaker/human_pytorch_model.bin",
    "videomaker-object": "SugerWu/VideoMaker/object_pytorch_model.bin",
}
HF_FILE_PREFIX = "hf:"


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
    from pipelines.preprocess.config import LatentsConfig
    from videomaker.presets import load_preset

    pairs = []
    if config.get("base_model"):  # a preset JSON itself
        pairs.append((config["base_model"], config["motion_adapter"]))
    names = [config.get("preset")]
    latents = config.get("latents")
    if isinstance(latents, dict) and latents.get("encode"):  # PreprocessConfig's `latents` group
        names.append(latents.get("preset", LatentsConfig.preset))
    for name in filter(None, names):
        preset = load_preset(name)
        if not preset.is_random_init:
            pairs.append((preset.base_model, preset.motion_adapter))
    return [
        weight
        for base, motion in pairs
        for weight in (
            weight_at("diffusion-backbone", base, hub=True, patterns=SD15_COMPONENTS),
            weight_at("motion-adapter", motion, hub=True),
        )
    ]


def _metric_weights(config: dict) -> list[WeightSource]:
    if not {"backends", "scorers", "method"} & set(config):  # only scoring and evaluation jobs load metric models
        return []
    from metrics.backends import ALL_ROLES, METRIC_BACKENDS, MetricBackendsConfig
    from pipelines.configs import validate

    backends = validate(MetricBackendsConfig, config.get("backends") or {}, where="backends")
    return [
        weight
        for role in ALL_ROLES
        if getattr(backends, role) is not None
        for weight in METRIC_BACKENDS.weights(role, getattr(backends, role), where=f"backends.{role}.options")
    ]


def _preprocess_weights(config: dict) -> list[WeightSource]:
    from metrics.backends.registry import BackendSpec
    from pipelines.preprocess.backends import CONFIG_KINDS, SHP_BACKENDS

    weights = []
    models = config.get("models")
    models = models if isinstance(models, dict) else {}  # PreprocessConfig's `models` group
    for role, kind in CONFIG_KINDS.items():
        if not models.get(role):
            continue  # the PreprocessConfig defaults are the weight-free backends
        backend = models[role]
        spec = BackendSpec(backend.get("name", ""), backend.get("options") or {})
        weights += SHP_BACKENDS.weights(kind, spec, where=f"models.{role}.options")
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
        weights.append(weight_at(kind, method.get("weights") or default.weights, hub=True, patterns=patterns))
        if method.get("motion_adapter"):  # the baselines' own motion adapter (the author's: v1-5-2)
            weights.append(weight_at("baseline-motion-adapter", method["motion_adapter"], hub=True))
    if method.get("face"):
        from metrics.backends import METRIC_BACKENDS
        from metrics.backends.registry import BackendSpec

        face = BackendSpec(method["face"].get("name", ""), method["face"].get("options") or {})
        weights += METRIC_BACKENDS.weights("face", face, where="method.face.options")
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


def _merged(found: list[WeightSource]) -> list[WeightSource]:
    """One entry per (kind, source), fetching every file any config needs from it; the same role
    from another source gets a numbered name."""
    merged: dict[tuple[str, str], WeightSource] = {}
    for weight in found:
        key = (weight.kind, weight.source)
        if key in merged:
            known = merged[key]
            patterns = (
                None
                if None in (known.allow_patterns, weight.allow_patterns)
                else tuple(dict.fromkeys(known.allow_patterns + weight.allow_patterns))
            )
            aliases = tuple(dict.fromkeys(a for a in (*known.aliases, *weight.aliases) if a != known.source))
            merged[key] = replace(known, allow_patterns=patterns, aliases=aliases)
            continue
        taken = {w.name for w in merged.values()}
        name = next(n for n in (weight.name, *(f"{weight.name}-{i}" for i in range(2, 100))) if n not in taken)
        merged[key] = replace(weight, name=name, aliases=tuple(a for a in weight.aliases if a != weight.source))
    return list(merged.values())


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
