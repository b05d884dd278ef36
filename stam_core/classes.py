"""Class-name lists. Kinetics-400 in the model's index order (alphabetical folder order)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def read_class_names(path: str | Path) -> tuple[str, ...]:
    """One class name per line; blank lines are ignored."""
    text = Path(path).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _packaged_kinetics400() -> tuple[str, ...]:
    text = resources.files(__package__).joinpath("kinetics400_classes.txt").read_text("utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    assert len(names) == 400, "packaged Kinetics-400 list must hold 400 names"
    return names


KINETICS400_CLASSES: tuple[str, ...] = _packaged_kinetics400()


def load_class_names(labels_file: str | Path | None = None) -> list[str]:
    """The class names to label with: a file's (fine-tuned checkpoints), else Kinetics-400."""
    return list(read_class_names(labels_file) if labels_file else KINETICS400_CLASSES)
