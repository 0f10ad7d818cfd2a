"""The paper's published numbers (docs/method.md, section 9) as data, to print beside our own runs.

Keys are the metric keys of `metrics.aggregate` (clip_t, face_sim, clip_i, dino_i, t_cons, dd);
Face Sim is None where the paper publishes none (the object set).
"""

from __future__ import annotations

HUMAN_COLUMNS = ("clip_t", "face_sim", "clip_i", "dino_i", "t_cons", "dd")
OBJECT_COLUMNS = ("clip_t", "clip_i", "dino_i", "t_cons", "dd")  # the paper's object table has no Face Sim
PUBLISHED_SETS = ("celebrity", "non_celebrity", "object")

# (method, set) -> values in the paper's column order: HUMAN_COLUMNS, or OBJECT_COLUMNS for objects.
_MAIN_TABLES = {
    ("VideoMaker", "celebrity"): (0.2586, 0.8047, 0.8285, 0.7119, 0.9818, 0.3725),
    ("IP-Adapter", "celebrity"): (0.2064, 0.1994, 0.7772, 0.6825, 0.9980, 0.1025),
    ("IP-Adapter-Plus", "celebrity"): (0.2109, 0.2204, 0.7784, 0.6856, 0.9981, 0.1000),
    ("IP-Adapter-FaceID", "celebrity"): (0.2477, 0.5610, 0.5852, 0.4410, 0.9945, 0.1200),
    ("ID-Animator", "celebrity"): (0.2236, 0.3224, 0.4719, 0.3872, 0.9891, 0.2825),
    ("PhotoMaker (SDXL)", "celebrity"): (0.2627, 0.3545, 0.7323, 0.4579, 0.9777, 0.3675),
    ("VideoMaker", "non_celebrity"): (0.2773, 0.6974, 0.6882, 0.5937, 0.9797, 0.3590),
    ("VideoMaker", "object"): (0.284, 0.8071, 0.7326, 0.9848, 0.5132),
    ("VideoBooth", "object"): (0.266, 0.7637, 0.6658, 0.9564, 0.5091),
}
# Ablation on the celebrity set; each row adds one component to the one above (+SHP is the full model).
_ABLATION = {
    ("PISA only", "celebrity"): (0.2206, 0.7928, 0.7966, 0.6694, 0.9671, 0.2725),
    ("+GIRL", "celebrity"): (0.2258, 0.8184, 0.8484, 0.7536, 0.9855, 0.2750),
    ("+ref in cross-attn", "celebrity"): (0.2291, 0.8454, 0.8469, 0.7351, 0.9747, 0.2915),
    ("+update motion", "celebrity"): (0.2302, 0.8563, 0.8674, 0.7635, 0.9823, 0.3575),
    ("+SHP", "celebrity"): (0.2586, 0.8047, 0.8285, 0.7119, 0.9818, 0.3725),
}


def _as_metrics(set_name: str, values: tuple[float, ...]) -> dict[str, float | None]:
    columns = OBJECT_COLUMNS if set_name == "object" else HUMAN_COLUMNS
    return {key: dict(zip(columns, values)).get(key) for key in HUMAN_COLUMNS}


PUBLISHED: dict[tuple[str, str], dict[str, float | None]] = {key: _as_metrics(key[1], values) for key, values in _MAIN_TABLES.items()}
PUBLISHED_ABLATION: dict[tuple[str, str], dict[str, float | None]] = {key: _as_metrics(key[1], values) for key, values in _ABLATION.items()}


def published_rows(set_name: str, *, ablation: bool = False) -> list[dict]:
    """The paper's rows of one set, in the paper's order, each labelled as published.

    Args:
        set_name: "celebrity", "non_celebrity" or "object"; any other set has no published rows.
        ablation: False (default) gives the method comparison; True the ablation rows (celebrity only).

    Returns:
        Dicts with `method`, `set`, `source` ("paper") and the six metric keys (None where unpublished).

    Example:
        >>> published_rows("celebrity")[0]["clip_t"]
        0.2586
    """
    if set_name not in PUBLISHED_SETS:
        raise ValueError(f"`set_name`={set_name!r} has no published numbers. Available: {list(PUBLISHED_SETS)}")
    table = PUBLISHED_ABLATION if ablation else PUBLISHED
    return [
        {"method": method, "set": row_set, "source": "paper", **metrics}
        for (method, row_set), metrics in table.items()
        if row_set == set_name
    ]
