"""The benchmarks of docs/method.md, section 8 as data: sets, prompts, and a user manifest of subjects.

Reference images are not shipped (likeness and licences), so a benchmark is a manifest of
(subject_id, set, class, reference) rows plus the prompt lists below. The manifest is checked as
a whole before anything is generated, so one run reports every bad row at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.manifests import missing_columns, read_manifest
from videomaker import storage
from videomaker.subjects import HUMAN_CLASSES
from videomaker.subjects import is_human as is_human_class

HUMAN_PROMPTS = (
    # clothing
    "A person dressed in a crisp white button-up shirt.",
    "A person in a sleeveless workout top, displaying an active lifestyle.",
    "A person wearing a sequined top that sparkles under the light, ready for a festive occasion.",
    "A person wearing a Superman outfit.",
    "A person wearing a blue hoodie.",
    # action
    "A person holding a book open, reading a book, sitting on a park bench.",
    "A person playing an acoustic guitar.",
    "A person laughing with their head tilted back, eyes sparkling with mirth.",
    "A person is enjoying a cup of coffee in a cozy café.",
    "A person watching a laptop, focused on the task at hand.",
    # accessory
    "A person wearing a headphones, engaged in a hands-free conversation.",
    "A person with a pair of trendy headphones around their neck, a music lover's staple.",
    "A person with a beanie hat and round-framed glasses, portraying a hipster look.",
    "A person wearing sunglasses.",
    "A person wearing a Christmas hat.",
    # view
    "A person captured in a close-up, their eyes conveying a depth of emotion.",
    "A person framed against the sky, creating an open and airy feel.",
    "A person through a rain-streaked window, adding a layer of introspection.",
    "A person holding a bottle of red wine.",
    "A person riding a horse.",
    # background
    "A person is standing in front of the Eiffel Tower.",
    "A person with a bustling urban street scene behind them, capturing the energy of the city.",
    "A person standing before a backdrop of bookshelves, indicating a love for literature.",
    "A person swimming in the pool",
    "A person stands in the falling snow scene at the park.",
)

_BIG_CAT_ENDINGS = (
    "running along a savannah at dawn.",
    "walking through a dense jungle.",
    "running on a snowy plain.",
    "running along a rocky coastline.",
    "walking through a field of sunflowers.",
    "running across a grassy hilltop.",
    "walking through a grassland.",
    "running along a riverbank.",
    "walking on a savannah during sunrise.",
    "running on a plain.",
)
_ENDINGS = {
    "bear": (
        "walking through a snowy landscape.",
        "walking in a sunny meadow.",
        "resting in the shade of a large tree.",
        "walking along a beach.",
        "fishing in a rushing river.",
        "running in the forest.",
        "walking along a rocky shoreline.",
        "drinking from a clear mountain stream.",
        "standing on its hind legs to look around.",
        "running on the grass.",
    ),
    "car": (
        "cruising down a scenic coastal highway at sunset.",
        "silently gliding through a quiet residential area.",
        "smoothly merging onto a highway.",
        "driving along a desert road.",
        "speeding through a muddy forest trail.",
        "drifting around a sharp corner on a mountain road.",
        "navigating through a snow-covered road.",
        "driving through a tunnel with bright lights.",
        "driving through a beach.",
        "driving through a foggy forest road.",
    ),
    "elephant": (
        "walking through the jungle.",
        "crossing a river.",
        "walking on the grass.",
        "walking on a road.",
        "walking along a dirt road.",
        "playing in a mud pit.",
        "walking through a dense jungle.",
        "walking along a sandy beach.",
        "running through a meadow of wildflowers.",
        "running across a desert landscape.",
    ),
    "horse": (
        "walking through a dense forest.",
        "running across a grassy meadow.",
        "walking along a sandy beach.",
        "running through a shallow stream.",
        "walking on a mountain trail.",
        "running across a desert landscape.",
        "walking through a quiet village.",
        "running in an open field.",
        "walking along a forest path.",
        "running through tall grass.",
    ),
    "lion": _BIG_CAT_ENDINGS,
    "panda": (
        "walking through a bamboo forest.",
        "running on a grassy meadow.",
        "running through a field of wildflowers.",
        "walking through a snowy landscape.",
        "walking through a city park.",
        "walking in front of the Eiffel Tower.",
        "wandering through a dense jungle.",
        "running along a sandy beach.",
        "exploring a cave.",
    ),
    "tiger": _BIG_CAT_ENDINGS,
}
_WRITTEN_OUT = {
    "cat": (
        "A cat is perched on a bookshelf, silently observing the room below.",
        "A cat is sitting in a cardboard box, perfectly content in its makeshift fortress.",
        "A cat is curled up in a human's lap, purring softly as it enjoys being petted.",
        "A cat is circle around a food bowl in a room, patiently waiting for mealtime.",
        "A cat is lying on a windowsill, its silhouette framed by the setting sun.",
        "A cat is running on the grass.",
        "A cat is walking on a street. There are many buildings on both sides of the street.",
        "A cat is sitting in a window, watching the raindrops race down the glass.",
        "A cat is playing with a ball of wool on a child bed.",
        "A cat is playing in the snow, rolling and rolling, snowflakes flying.",
    ),
    "dog": (
        "A dog is lying on a fluffy rug, its tail curled neatly around its body.",
        "A dog is walking on a street.",
        "A dog is swimming.",
        "A dog is sitting in a window, watching the raindrops race down the glass.",
        "A dog is running.",
        "A dog, a golden retriever, is seen bounding joyfully towards the camera.",
        "A dog is seen leaping into a sparkling blue lake, creating a splash.",
        "A dog is seen in a snowy backyard.",
        "A dog is seen napping on a cozy rug.",
        "A dog is seen playing tug-of-war with a rope toy against a small child.",
    ),
    "panda": ("A panda is eating bamboo.",),
}


def _object_prompts(subject_class: str) -> tuple[str, ...]:
    article = "An" if subject_class[0] in "aeiou" else "A"
    endings = tuple(f"{article} {subject_class} {ending}" for ending in _ENDINGS.get(subject_class, ()))
    return endings + _WRITTEN_OUT.get(subject_class, ())


OBJECT_CLASSES = ("bear", "car", "cat", "dog", "elephant", "horse", "lion", "panda", "tiger")
OBJECT_PROMPTS = {name: _object_prompts(name) for name in OBJECT_CLASSES}
HUMAN_SETS = ("celebrity", "non_celebrity")
SETS = (*HUMAN_SETS, "object")


def classes_of(set_name: str) -> tuple[str, ...]:
    """The subject classes a set accepts."""
    return HUMAN_CLASSES if set_name in HUMAN_SETS else OBJECT_CLASSES


def prompts_for(set_name: str, subject_class: str) -> tuple[str, ...]:
    """The paper's prompts of a subject: the 25 human prompts, or the 10 of its object class."""
    if set_name not in SETS:
        raise ValueError(f"Unknown benchmark set {set_name!r}; choose from {list(SETS)}.")
    if subject_class not in classes_of(set_name):
        raise ValueError(f"Set {set_name!r} has no class {subject_class!r}; choose from {list(classes_of(set_name))}.")
    return HUMAN_PROMPTS if set_name in HUMAN_SETS else OBJECT_PROMPTS[subject_class]


@dataclass(frozen=True)
class BenchmarkSubject:
    """One identity or object of a benchmark set and its reference image (an absolute path).

    `face_cur_reference`: the image FaceSim-Cur compares with (`metrics.records.ScoreRequest`);
    None: `reference` for human subjects. OpenS2V-Eval's entries set it by that benchmark's rule.
    """

    subject_id: str
    set: str
    subject_class: str
    reference: str
    face_cur_reference: str | None = None

    @property
    def is_human(self) -> bool:
        # A set beyond the paper's (OpenS2V's, pipelines/evaluation/opens2v.py) mixes people and objects: its class decides.
        return self.set in HUMAN_SETS or (self.set not in SETS and is_human_class(self.subject_class))


@dataclass(frozen=True)
class BenchmarkItem:
    """One video to generate: a subject, one of its prompts, one seed."""

    subject: BenchmarkSubject
    prompt_index: int
    prompt: str
    seed: int

    @property
    def item_id(self) -> str:
        """Stable and path-safe: `set/subject/pNN_sSEED`, the stem of the item's files."""
        return f"{self.subject.set}/{self.subject.subject_id}/p{self.prompt_index:02d}_s{self.seed}"


class BenchmarkManifestError(ValueError):
    """A benchmark manifest with bad rows; the message lists every one of them."""

    def __init__(self, manifest: str, problems: list[str]) -> None:
        self.problems = problems
        listing = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(
            f"benchmark manifest {manifest!r} has {len(problems)} problem(s); fix them and re-run (nothing was generated):\n{listing}"
        )


REQUIRED_COLUMNS = ("subject_id", "set", "class", "reference")


def _read_rows(path: str) -> list[dict]:
    rows = read_manifest(path, where="`benchmark`")
    names = list(rows[0]) if rows else []
    missing = missing_columns(names, REQUIRED_COLUMNS)
    if rows and missing:
        raise BenchmarkManifestError(path, [f"missing column(s) {missing}; the file has {names}"])
    return rows


def image_problem(path: str, noun: str = "reference") -> str | None:
    """Why an image (a subject's `noun`) cannot be used, or None: it must exist and decode completely."""
    from metrics.io import decode_image

    try:
        data = storage.read_bytes(path)
    except FileNotFoundError:
        return f"{noun} {path!r} does not exist"
    except (OSError, ValueError) as err:
        return f"{noun} {path!r} cannot be read ({type(err).__name__}: {err})"
    try:
        decode_image(data)
    except ValueError as err:
        return f"{noun} {path!r} is {err}"
    return None


def read_benchmark_manifest(manifest: str | Path) -> list[BenchmarkSubject]:
    """Every subject of the manifest, after checking all rows; raises listing every bad row.

    Checked: required fields present, known set, a class that set accepts, unique (set, subject_id),
    reference file present and decodable. Relative reference paths are read from the manifest's folder.
    """
    path = storage.absolute(manifest)
    subjects, problems, seen = [], [], set()
    for number, row in enumerate(_read_rows(path), start=1):
        values = {c: str(row.get(c) or "").strip() for c in REQUIRED_COLUMNS}
        where = f"row {number} (subject_id={values['subject_id'] or '?'})"
        row_problems = [f"empty {c!r}" for c in REQUIRED_COLUMNS if not values[c]]
        set_name, subject_class = values["set"], values["class"].lower()
        if set_name and set_name not in SETS:
            row_problems.append(f"unknown set {set_name!r} (choose from {list(SETS)})")
        elif set_name and subject_class and subject_class not in classes_of(set_name):
            row_problems.append(f"class {subject_class!r} is not in set {set_name!r} (choose from {list(classes_of(set_name))})")
        if (set_name, values["subject_id"]) in seen:
            row_problems.append(f"duplicate subject_id {values['subject_id']!r} in set {set_name!r}")
        seen.add((set_name, values["subject_id"]))
        if values["subject_id"] and any(ch in values["subject_id"] for ch in "/\\"):
            row_problems.append(f"subject_id {values['subject_id']!r} must not contain path separators")
        reference = storage.relative_to(values["reference"], path)
        if values["reference"]:
            reference_problem = image_problem(reference)
            if reference_problem:
                row_problems.append(reference_problem)
        if row_problems:
            problems.append(f"{where}: " + "; ".join(row_problems))
        else:
            subjects.append(BenchmarkSubject(values["subject_id"], set_name, subject_class, reference))
    if not problems and not subjects:
        problems.append("no rows")
    if problems:
        raise BenchmarkManifestError(path, problems)
    return subjects


def benchmark_items(
    subjects: list[BenchmarkSubject],
    *,
    sets: tuple[str, ...] | list[str] = SETS,
    seeds: tuple[int, ...] | list[int] = (0, 1, 2, 3, 4),
    prompts_per_subject: int | None = None,
) -> list[BenchmarkItem]:
    """Every (subject, prompt, seed) of the chosen sets, in a stable order.

    Args:
        sets: Which sets to run; subjects of other sets are left out.
        seeds: Seeds per (subject, prompt); the published DD values imply several (default 5).
        prompts_per_subject: Only the first N prompts of each subject (smoke runs); None takes all.
    """
    unknown = [s for s in sets if s not in SETS]
    if unknown:
        raise ValueError(f"`sets` has unknown set(s) {unknown}; choose from {list(SETS)}.")
    if not seeds:
        raise ValueError("`seeds` is empty; give at least one seed.")
    if prompts_per_subject is not None and prompts_per_subject < 1:
        raise ValueError(f"`prompts_per_subject` must be >= 1 or None, got {prompts_per_subject}.")
    items = []
    for subject in subjects:
        if subject.set not in sets:
            continue
        prompts = prompts_for(subject.set, subject.subject_class)[:prompts_per_subject]
        items += [BenchmarkItem(subject, i, prompt, seed) for i, prompt in enumerate(prompts) for seed in seeds]
    return items
