"""Which subject classes are people: they get a face box, Face Sim and the human negative prompt."""

from __future__ import annotations

# Lower-case; a class is compared after stripping and lower-casing ("Person " is a person).
HUMAN_CLASSES: tuple[str, ...] = ("person", "human", "man", "woman", "face")


def is_human(subject_class: str | None) -> bool:
    """True when `subject_class` names a person (case and surrounding spaces ignored); None is not one.

    Example:
        >>> is_human(" Woman"), is_human("dog")
        (True, False)
    """
    return subject_class is not None and subject_class.strip().lower() in HUMAN_CLASSES
