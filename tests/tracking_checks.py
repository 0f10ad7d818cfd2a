"""Checks on MLflow runs shared by the job tests, written independently of `pipelines.tracking`."""

import json

import yaml


def leaves(value, prefix: str = ""):
    """(dotted key, value) for every leaf of a nested YAML mapping; an empty mapping is a leaf."""
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            yield from leaves(inner, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


def assert_whole_config_logged(params: dict[str, str], config_yaml: str, *, summarised: tuple[str, ...] = ()) -> None:
    """Every key of the resolved config (the run's `config.yaml`) is a param with that value.

    `summarised`: keys a job logs in a richer form of their own (e.g. a JSON value), checked for presence only.
    """
    missing, different = [], []
    for key, value in leaves(yaml.safe_load(config_yaml)):
        if key not in params:
            missing.append(key)
            continue
        if key in summarised:
            continue
        expected = json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else str(value)
        if params[key] != expected[:6000] and not (len(expected) > 6000 and params[key].endswith("...")):
            different.append(f"{key}: param {params[key]!r}, config {expected!r}")
    assert not missing and not different, f"config keys not logged: {missing}; logged differently: {different}"
