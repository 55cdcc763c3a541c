"""Builds Fruits-360 style folders: tiny trees of given bytes, and a corpus mixing good photos with
every kind of bad input the job must survive.

``build_mixed_corpus`` returns what each file should become, so tests can assert that every good
image is featurized (whatever its mode) and every bad one is quarantined with the right reason.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

#: Small limits so that the "too large" and "bomb" cases stay tiny on disk.
MAX_FILE_BYTES = 200_000
MAX_IMAGE_PIXELS = 1_000_000


@dataclass
class Corpus:
    root: Path
    good: list[Path] = field(default_factory=list)
    #: bad file -> the reason the job must give
    bad: dict[Path, str] = field(default_factory=dict)


def make_tree(root: Path, files: dict[str, bytes]) -> None:
    """Write ``{relative path: bytes}`` below ``root``, creating the folders."""
    for relative, data in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _fruit(seed: int, size: int = 100) -> Image.Image:
    """A red disc on white, slightly different per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    radius = size * rng.uniform(0.3, 0.4)
    inside = (x - size / 2) ** 2 + (y - size / 2) ** 2 < radius**2
    pixels = np.full((size, size, 3), 255, np.uint8)
    pixels[inside] = (rng.integers(150, 230), rng.integers(0, 60), rng.integers(0, 60))
    return Image.fromarray(pixels)


def good_variants(seed: int) -> dict[str, bytes]:
    """The same kind of photo in every mode and container the job must featurize."""
    rgb = _fruit(seed)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(np.asarray(rgb.convert("L")) > 250, 0, 255).astype(np.uint8)))
    exif = Image.Exif()
    exif[0x0112] = 6
    return {
        "rgb.jpg": _encode(rgb, "JPEG", quality=95),
        "grey.jpg": _encode(rgb.convert("L"), "JPEG", quality=95),
        "palette.png": _encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "alpha.png": _encode(rgba, "PNG"),
        "cmyk.jpg": _encode(rgb.convert("CMYK"), "JPEG", quality=95),
        "sixteen_bit.png": _encode(Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257)), "PNG"),
        "rotated.jpg": _encode(rgb.rotate(90, expand=True), "JPEG", quality=95, exif=exif.tobytes()),
        "upper.JPG": _encode(rgb, "JPEG", quality=90),
    }


def bad_files() -> dict[str, tuple[bytes, str]]:
    """File name -> (content, expected reason)."""
    noise = Image.effect_noise((100, 100), 60).convert("RGB")
    jpeg = _encode(noise, "JPEG")
    big = _encode(Image.effect_noise((400, 400), 90).convert("RGB"), "PNG", compress_level=0)
    return {
        "empty.jpg": (b"", "empty_file"),
        "truncated.jpg": (jpeg[: len(jpeg) // 3], "corrupt_image"),
        "text.jpg": (b"Dear diary, this is not a photo.\n" * 10, "not_an_image"),
        "photo.jpeg": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "unsupported_format"),
        "drawing.png": (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', "unsupported_format"),
        "bomb.png": (_encode(Image.new("L", (2000, 2000)), "PNG"), "decompression_bomb"),
        "huge.png": (big, "too_large"),
    }


def build_mixed_corpus(root: Path, good_seeds: int = 2) -> Corpus:
    """``<root>/Training/Apple Red/…`` good files in every mode, ``<root>/Test/Broken/…`` bad ones."""
    shutil.rmtree(root, ignore_errors=True)
    corpus = Corpus(root)
    for seed in range(good_seeds):
        folder = root / "Training" / "Apple Red"
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in good_variants(seed).items():
            path = folder / f"{seed}_{name}"
            path.write_bytes(data)
            corpus.good.append(path)
    folder = root / "Test" / "Broken"
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, reason) in bad_files().items():
        path = folder / name
        path.write_bytes(data)
        corpus.bad[path] = reason
    (folder / "notes.txt").write_text("not listed: wrong extension")
    assert len(bad_files()["huge.png"][0]) > MAX_FILE_BYTES
    return corpus
