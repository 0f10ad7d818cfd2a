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


# OpenS2V-Eval leaderboard rows (docs/opens2v.md): the results tables the OpenS2V-Nexus project
# publishes with its leaderboard, one per protocol version and domain, as of its v1.1 release
# (file_v1.0 and file_v1.1 results CSVs). Values are the printed percentages, columns in the result
# JSON's order (`metrics.opens2v.result_keys`): total_score first. Venue: "open" or "closed" source.
# VideoMaker appears in the Human-Domain tables only. One published total does not follow from its
# sub-scores: EchoVideo's v1.0 Human-Domain 54.52 (its sub-scores weigh to 54.43); kept as printed.
OPENS2V_SOURCE = "OpenS2V-Eval leaderboard, {version} results table of the {domain}, published by the OpenS2V-Nexus project"
_OPENS2V_TABLES = {
    ("v1.0", "Human-Domain"): (
        ("Vidu2.0(20250503)", "closed", "OpenS2V Team", (51.11, 47.33, 14.8, 38.5, 70.42, 71.99)),
        ("Pika2.1(20250503)", "closed", "OpenS2V Team", (52.56, 52.39, 28.94, 29.41, 75.03, 72.53)),
        ("Kling1.6(20250503)", "closed", "OpenS2V Team", (59.13, 50.94, 50.55, 41.02, 67.79, 78.28)),
        ("VACE-P1.3B", "open", "OpenS2V Team", (46.28, 51.45, 8.78, 19.98, 73.27, 70.89)),
        ("VACE-1.3B", "open", "OpenS2V Team", (49.02, 53.18, 16.87, 22.29, 73.61, 73.0)),
        ("VACE-14B", "open", "OpenS2V Team", (58.57, 52.78, 11.76, 64.65, 69.53, 74.33)),
        ("Phantom-1.3B", "open", "OpenS2V Team", (53.64, 50.8, 14.14, 46.3, 72.17, 71.67)),
        ("SkyReels-A2-P14B", "open", "OpenS2V Team", (54.27, 39.88, 31.98, 55.02, 63.63, 67.33)),
        ("HunyuanCustom", "open", "OpenS2V Team", (55.85, 49.67, 15.13, 62.25, 69.78, 67.0)),
        ("Hailuo(20250503)", "closed", "OpenS2V Team", (60.2, 52.75, 31.83, 57.79, 71.42, 74.52)),
        ("ConsisID", "open", "OpenS2V Team", (52.97, 41.76, 38.12, 43.14, 72.03, 64.67)),
        ("Concat-ID-CogVideoX", "open", "OpenS2V Team", (53.32, 44.13, 31.76, 43.83, 73.67, 66.44)),
        ("FantasyID", "open", "OpenS2V Team", (49.8, 45.6, 23.48, 32.42, 72.68, 68.11)),
        ("EchoVideo", "open", "OpenS2V Team", (54.52, 39.93, 35.16, 48.57, 68.4, 69.22)),
        ("VideoMaker", "open", "OpenS2V Team", (52.31, 31.76, 50.09, 76.45, 45.28, 47.08)),
        ("ID-Animator", "open", "OpenS2V Team", (43.37, 42.03, 33.54, 31.56, 52.91, 54.03)),
        ("Phantom-14B", "open", "OpenS2V Team", (58.69, 49.14, 41.24, 55.02, 72.55, 68.33)),
        ("Concat-ID-Wan-AdaLN", "open", "OpenS2V Team", (53.18, 43.13, 17.19, 50.05, 71.9, 69.44)),
        ("MAGREF-480P", "open", "OpenS2V Team", (50.41, 51.2, 14.76, 32.87, 70.88, 72.22)),
    ),
    ("v1.0", "Open-Domain"): (
        ("Vidu2.0(20250503)", "closed", "OpenS2V Team", (47.59, 41.47, 13.52, 35.11, 67.57, 43.55, 71.44)),
        ("Pika2.1(20250503)", "closed", "OpenS2V Team", (48.88, 46.87, 24.7, 30.8, 69.21, 45.41, 69.79)),
        ("Kling1.6(20250503)", "closed", "OpenS2V Team", (54.46, 44.6, 41.6, 40.1, 66.2, 45.92, 79.06)),
        ("VACE-P1.3B", "open", "OpenS2V Team", (43.95, 47.27, 12.03, 16.58, 71.38, 40.04, 70.56)),
        ("VACE-1.3B", "open", "OpenS2V Team", (45.53, 48.24, 18.83, 20.58, 71.26, 37.95, 71.78)),
        ("VACE-14B", "open", "OpenS2V Team", (52.87, 47.21, 15.02, 55.09, 67.27, 44.2, 72.78)),
        ("Phantom-1.3B", "open", "OpenS2V Team", (50.71, 46.67, 14.29, 48.55, 69.43, 42.44, 70.26)),
        ("SkyReels-A2-P14B", "open", "OpenS2V Team", (49.61, 39.4, 25.6, 45.95, 64.54, 43.77, 67.22)),
        ("Phantom-14B", "open", "OpenS2V Team", (52.32, 46.39, 33.42, 51.48, 70.65, 37.43, 68.66)),
        ("MAGREF-480P", "open", "OpenS2V Team", (47.93, 45.02, 21.81, 30.83, 70.47, 43.04, 69.49)),
    ),
    ("v1.0", "Single-Domain"): (
        ("Vidu2.0(20250503)", "closed", "OpenS2V Team", (48.67, 34.78, 24.4, 36.2, 65.56, 45.2, 72.6)),
        ("Pika2.1(20250503)", "closed", "OpenS2V Team", (48.93, 38.64, 31.9, 32.94, 62.19, 47.34, 70.6)),
        ("Kling1.6(20250503)", "closed", "OpenS2V Team", (53.12, 35.63, 36.4, 39.26, 61.99, 48.24, 81.4)),
        ("VACE-P1.3B", "open", "OpenS2V Team", (44.28, 42.58, 18.0, 18.02, 65.93, 36.26, 76.0)),
        ("VACE-1.3B", "open", "OpenS2V Team", (47.33, 41.81, 33.78, 22.38, 65.35, 38.52, 76.0)),
        ("VACE-14B", "open", "OpenS2V Team", (58.0, 41.3, 35.54, 64.65, 58.55, 51.33, 77.33)),
        ("Phantom-1.3B", "open", "OpenS2V Team", (49.95, 42.98, 19.3, 44.03, 65.61, 37.78, 76.0)),
        ("SkyReels-A2-P14B", "open", "OpenS2V Team", (51.64, 33.83, 21.6, 54.42, 61.93, 48.63, 70.6)),
        ("HunyuanCustom", "open", "OpenS2V Team", (51.64, 34.08, 26.83, 55.93, 54.31, 50.75, 68.66)),
        ("Phantom-14B", "open", "OpenS2V Team", (53.17, 47.46, 41.55, 51.82, 70.07, 35.35, 69.35)),
        ("MAGREF-480P", "open", "OpenS2V Team", (49.13, 46.31, 27.43, 33.77, 69.02, 42.45, 69.81)),
    ),
    ("v1.1", "Human-Domain"): (
        ("SkyReels-A2-P14B", "open", "OpenS2V Team", (56.43, 39.89, 80.19, 31.49, 55.01, 63.63, 59.31)),
        ("Vidu2.0(20250503)", "closed", "OpenS2V Team", (57.7, 47.33, 91.31, 14.54, 38.5, 70.43, 67.78)),
        ("EchoVideo", "open", "OpenS2V Team", (56.36, 39.93, 77.96, 35.58, 48.65, 68.4, 62.22)),
        ("Hailuo(20250503)", "closed", "OpenS2V Team", (65.26, 52.75, 99.1, 31.8, 57.69, 71.42, 69.2)),
        ("MAGREF-480P", "open", "OpenS2V Team", (57.72, 51.2, 90.26, 14.76, 32.87, 70.88, 70.28)),
        ("Concat-ID-CogVideoX", "open", "OpenS2V Team", (55.89, 44.13, 81.9, 31.07, 43.87, 73.67, 58.75)),
        ("HunyuanCustom", "open", "OpenS2V Team", (61.22, 49.67, 84.73, 15.13, 62.25, 69.78, 60.56)),
        ("Concat-ID-Wan-AdaLN", "open", "OpenS2V Team", (59.85, 43.13, 85.86, 17.19, 50.05, 71.9, 68.47)),
        ("FantasyID", "open", "OpenS2V Team", (54.33, 45.6, 85.44, 23.41, 32.48, 72.68, 62.36)),
        ("ConsisID", "open", "OpenS2V Team", (54.19, 41.77, 79.83, 37.99, 43.19, 72.03, 55.83)),
        ("Kling1.6(20250503)", "closed", "OpenS2V Team", (60.19, 50.94, 84.75, 50.02, 41.02, 67.79, 71.55)),
        ("VideoMaker", "open", "OpenS2V Team", (54.23, 31.76, 77.5, 50.09, 76.45, 45.28, 47.08)),
        ("VACE-P1.3B", "open", "OpenS2V Team", (53.97, 51.91, 95.8, 8.78, 19.98, 73.27, 65.83)),
        ("VACE-1.3B", "open", "OpenS2V Team", (54.9, 53.18, 95.84, 16.87, 22.29, 73.61, 65.28)),
        ("Pika2.1(20250503)", "closed", "OpenS2V Team", (56.84, 52.39, 85.29, 28.77, 29.42, 75.03, 67.53)),
        ("ID-Animator", "open", "OpenS2V Team", (49.75, 42.03, 94.69, 33.54, 31.56, 52.91, 56.11)),
        ("Phantom-1.3B", "open", "OpenS2V Team", (60.0, 50.8, 92.02, 14.09, 46.29, 72.17, 65.83)),
        ("VACE-14B", "open", "OpenS2V Team", (65.78, 52.78, 94.96, 11.76, 64.65, 69.53, 69.31)),
        ("Phantom-14B", "open", "OpenS2V Team", (64.22, 49.14, 94.81, 41.24, 55.04, 72.55, 69.86)),
        ("Stand-In", "open", "OpenS2V Team", (62.08, 51.25, 97.9, 5.03, 47.99, 69.91, 71.39)),
    ),
    ("v1.1", "Open-Domain"): (
        ("MAGREF-480P", "open", "OpenS2V Team", (52.51, 45.02, 93.17, 21.81, 30.83, 70.47, 43.04, 66.9)),
        ("VACE-P1.3B", "open", "OpenS2V Team", (48.98, 47.34, 96.8, 12.03, 16.59, 71.38, 40.19, 64.31)),
        ("Phantom-14B", "open", "OpenS2V Team", (56.77, 46.39, 96.31, 33.42, 51.46, 70.65, 37.43, 69.35)),
        ("SkyReels-A2-P14B", "open", "OpenS2V Team", (52.25, 39.41, 87.93, 25.6, 45.95, 64.54, 43.75, 60.32)),
        ("Pika2.1(20250503)", "closed", "OpenS2V Team", (51.88, 46.88, 87.06, 24.71, 30.38, 69.19, 45.4, 63.32)),
        ("Kling1.6(20250503)", "closed", "OpenS2V Team", (56.23, 44.59, 86.93, 41.6, 40.1, 66.2, 45.89, 74.59)),
        ("Vidu2.0(20250503)", "closed", "OpenS2V Team", (51.95, 41.48, 90.45, 13.52, 35.11, 67.57, 43.37, 65.88)),
        ("Phantom-1.3B", "open", "OpenS2V Team", (54.89, 46.67, 93.3, 14.29, 48.56, 69.43, 42.48, 62.5)),
        ("VACE-1.3B", "open", "OpenS2V Team", (49.89, 48.24, 97.2, 18.83, 20.57, 71.26, 37.91, 65.46)),
        ("VACE-14B", "open", "OpenS2V Team", (57.55, 47.21, 94.97, 15.02, 55.09, 67.27, 44.08, 67.04)),
        ("BindWeave", "closed", "Weave Team", (57.61, 45.55, 95.9, 13.91, 53.71, 67.79, 46.84, 66.85)),
    ),
    ("v1.1", "Single-Domain"): (
        ("VACE-P1.3B", "open", "OpenS2V Team", (49.2, 48.93, 95.68, 11.91, 18.04, 70.78, 36.24, 66.85)),
        ("VACE-1.3B", "open", "OpenS2V Team", (51.13, 49.41, 95.42, 22.51, 22.37, 70.87, 38.34, 68.33)),
        ("Kling1.6(20250503)", "closed", "OpenS2V Team", (56.67, 45.97, 85.76, 47.17, 39.27, 65.36, 49.3, 73.63)),
        ("Pika2.1(20250503)", "closed", "OpenS2V Team", (53.12, 47.43, 86.07, 26.32, 32.33, 69.84, 47.35, 64.68)),
        ("SkyReels-A2-P14B", "open", "OpenS2V Team", (55.06, 40.85, 85.54, 26.41, 54.42, 61.81, 48.6, 61.85)),
        ("MAGREF-480P", "open", "OpenS2V Team", (53.44, 46.31, 92.63, 27.43, 33.77, 69.02, 42.45, 68.33)),
        ("Phantom-14B", "open", "OpenS2V Team", (57.02, 47.46, 94.86, 41.55, 51.82, 70.07, 35.3, 71.11)),
        ("Phantom-1.3B", "open", "OpenS2V Team", (54.5, 49.0, 93.7, 16.38, 44.03, 69.54, 37.72, 66.76)),
        ("VACE-14B", "open", "OpenS2V Team", (61.75, 48.94, 93.16, 19.69, 64.65, 65.86, 50.82, 70.56)),
        ("Vidu2.0(20250503)", "closed", "OpenS2V Team", (52.9, 43.32, 91.88, 17.52, 36.19, 66.96, 44.84, 66.11)),
        ("HunyuanCustom", "open", "OpenS2V Team", (56.89, 44.84, 86.49, 17.94, 55.93, 62.71, 56.49, 58.98)),
    ),
}


def opens2v_published_rows(domain: str, *, version: str) -> list[dict]:
    """OpenS2V-Eval's published leaderboard rows of one domain and protocol version, in its table's order.

    Args:
        domain: "Human-Domain", "Open-Domain" or "Single-Domain".
        version: "v1.0" or "v1.1" (the current leaderboard).

    Returns:
        Dicts with `method`, `domain`, `version`, `venue`, `evaluated_by`, `source` (the table, in
        words) and the result JSON's keys (`total_score`, ...) as fractions (52.31 % -> 0.5231).

    Example:
        >>> [row["total_score"] for row in opens2v_published_rows("Human-Domain", version="v1.0") if row["method"] == "VideoMaker"]
        [0.5231]
    """
    from metrics.opens2v import result_keys

    if (version, domain) not in _OPENS2V_TABLES:
        tables = sorted(_OPENS2V_TABLES)
        raise ValueError(f"OpenS2V-Eval publishes no table for (version, domain)=({version!r}, {domain!r}). Available: {tables}")
    keys = result_keys(domain=domain, version=version)
    return [
        {
            "method": method,
            "domain": domain,
            "version": version,
            "venue": venue,
            "evaluated_by": evaluated_by,
            "source": OPENS2V_SOURCE.format(version=version, domain=domain),
            **{key: round(value / 100, 6) for key, value in zip(keys, values, strict=True)},
        }
        for method, venue, evaluated_by, values in _OPENS2V_TABLES[(version, domain)]
    ]
