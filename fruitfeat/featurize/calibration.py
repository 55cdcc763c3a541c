"""The images an int8 model is calibrated and gated on: a deterministic sample of a Fruits-360-like tree."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fruitfeat.errors import WeightsError
from fruitfeat.featurize.decode import ImageDecodeError, decode_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Holdout:
    """Images the gate compares the two models on; ``labels`` (optional) adds a top-1 comparison."""

    images: np.ndarray
    labels: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CalibrationSet:
    """Calibration images, the held-out ones, and what the int8 model's sidecar records about them."""

    calibration: np.ndarray
    holdout: Holdout
    recorded: dict[str, Any]


def sample_tree(root: Path, count: int, holdout_share: float, image_size: int) -> CalibrationSet:
    """A deterministic, class-balanced sample of up to ``count`` images of a Fruits-360-like tree.

    Takes ``root/Training`` when it exists. Files are ordered by the sha256 of their relative path within
    each class and dealt round-robin across classes, so the sample does not depend on directory order;
    every ``1/holdout_share``-th image of each class goes to the gate, the rest to calibration.
    """
    base = root / "Training" if (root / "Training").is_dir() else root
    by_class: dict[str, list[Path]] = {}
    for path in sorted(base.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            by_class.setdefault(path.parent.relative_to(base).as_posix(), []).append(path)
    queues = [sorted(files, key=_path_key(base)) for _, files in sorted(by_class.items())]
    dealt = [(q[i], i) for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)][:count]
    every = max(2, round(1 / holdout_share))
    gate = np.array([rank % every == every - 1 for _, rank in dealt], dtype=bool)
    if gate.sum() < 2 or (~gate).sum() < 2:
        raise WeightsError(f"{base} has {len(dealt)} images: too few to calibrate and hold out a share")
    digest = hashlib.sha256()
    for path, _ in dealt:
        digest.update(path.relative_to(base).as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    images = np.stack([_decoded(p, image_size) for p, _ in dealt])
    labels = tuple(p.parent.relative_to(base).as_posix() for p, _ in dealt)
    holdout = Holdout(images[gate], tuple(label for label, g in zip(labels, gate, strict=True) if g))
    recorded = {"calibration_images": int((~gate).sum()), "holdout_images": int(gate.sum()),
                "classes": len(queues), "files_sha256": digest.hexdigest()}
    return CalibrationSet(images[~gate], holdout, recorded)


def _path_key(base: Path) -> Callable[[Path], str]:
    return lambda path: hashlib.sha256(path.relative_to(base).as_posix().encode()).hexdigest()


def _decoded(path: Path, image_size: int) -> np.ndarray:
    try:
        return decode_image(path.read_bytes(), image_size)
    except ImageDecodeError as exc:
        raise WeightsError(f"calibration image {path}: {exc}; remove it or pick another --calibration") from None
