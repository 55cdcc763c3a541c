"""Offline, deterministic Fruits-360-style sample images.

The real dataset is large and downloaded; tests, demos and `make sample-data`
need something small that is reproducible byte-for-byte and carries no
licence baggage, so the fruit are drawn here with Pillow.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fruitfeat import phone_photos

WHITE = (255, 255, 255)
_SUPERSAMPLE = 3  # draw large, shrink with LANCZOS: cheap anti-aliasing
_JPEG_QUALITY = 95

Color = tuple[int, int, int]
Point = tuple[float, float]


class _Canvas:
    """Draws every shape twice so we always know which pixels are fruit."""

    def __init__(self, size: int) -> None:
        self.rgb = Image.new("RGB", (size, size), WHITE)
        self.mask = Image.new("L", (size, size), 0)
        self._rgb = ImageDraw.Draw(self.rgb)
        self._mask = ImageDraw.Draw(self.mask)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: Color) -> None:
        box = (cx - rx, cy - ry, cx + rx, cy + ry)
        self._rgb.ellipse(box, fill=fill)
        self._mask.ellipse(box, fill=255)

    def polygon(self, pts: Sequence[Point], fill: Color) -> None:
        self._rgb.polygon(list(pts), fill=fill)
        self._mask.polygon(list(pts), fill=255)

    def line(self, pts: Sequence[Point], fill: Color, width: float) -> None:
        w = max(1, round(width))
        self._rgb.line(list(pts), fill=fill, width=w, joint="curve")
        self._mask.line(list(pts), fill=255, width=w, joint="curve")


def _in_ellipse(rng: np.random.Generator, n: int, rx: float, ry: float) -> np.ndarray:
    """Uniform points in an ellipse, so textures never spill onto the background."""
    ang = rng.uniform(0.0, 2 * math.pi, n)
    rad = np.sqrt(rng.uniform(0.0, 1.0, n))
    return np.stack([rad * rx * np.cos(ang), rad * ry * np.sin(ang)], axis=1)


def _star(cx: float, cy: float, outer: float, inner: float, n: int) -> list[Point]:
    return [
        (cx + (outer if k % 2 == 0 else inner) * math.sin(math.pi * k / n),
         cy - (outer if k % 2 == 0 else inner) * math.cos(math.pi * k / n))
        for k in range(2 * n)
    ]


def _apple(cv: _Canvas, c: float, r: float, rng: np.random.Generator) -> None:
    red = (178, 24, 32)
    for dx in (-0.36, 0.36):  # two shoulders give the dip around the stem
        cv.ellipse(c + dx * r, c - 0.12 * r, 0.62 * r, 0.72 * r, red)
    cv.ellipse(c, c + 0.2 * r, 0.8 * r, 0.68 * r, red)
    for x in rng.uniform(-0.6, 0.6, 7):  # faint vertical streaks of real apples
        cv.line([(c + x * r, c - 0.4 * r), (c + 0.8 * x * r, c + 0.6 * r)], (192, 38, 38), 0.03 * r)
    cv.ellipse(c - 0.42 * r, c - 0.3 * r, 0.14 * r, 0.24 * r, (222, 90, 85))
    cv.line([(c, c - 0.6 * r), (c + 0.08 * r, c - 1.05 * r)], (95, 60, 25), 0.09 * r)
    leaf = [(c + 0.08 * r + 0.25 * r * (1 + math.cos(t)) * 0.9,
             c - 0.95 * r - 0.25 * r * (1 + math.cos(t)) * 0.45 + 0.11 * r * math.sin(t))
            for t in np.linspace(0, 2 * math.pi, 24, endpoint=False)]
    cv.polygon(leaf, (62, 140, 45))
    cv.line([leaf[0], leaf[12]], (40, 100, 30), 0.025 * r)


def _banana(cv: _Canvas, c: float, r: float, rng: np.random.Generator) -> None:
    big, half = 1.3 * r, math.radians(58)
    ts = np.linspace(-half, half, 41)
    width = 0.08 * r + 0.5 * r * np.cos(np.pi * ts / (2 * half)) ** 0.6
    oy = c - big + 0.3 * r  # centres the crescent's bounding box roughly on c

    def arc(rad: np.ndarray | float, t: np.ndarray) -> list[Point]:
        return [(c + q * math.sin(a), oy + q * math.cos(a)) for q, a in zip(np.broadcast_to(rad, t.shape), t)]

    cv.polygon(arc(big, ts) + arc(big - width, ts)[::-1], (242, 208, 55))
    cv.line(arc(big - 0.45 * width[3:-3], ts[3:-3]), (214, 176, 38), 0.035 * r)
    for x, y in _in_ellipse(rng, 6, 0.6 * r, 0.12 * r):
        cv.ellipse(c + x, oy + big - 0.25 * r + y, 0.02 * r, 0.015 * r, (150, 110, 45))
    mid = arc(big - 0.5 * width, ts)
    for tip in (mid[0], mid[-1]):  # brown tips, the classic banana cue
        cv.ellipse(*tip, 0.07 * r, 0.07 * r, (95, 65, 28))
    stem_end = (mid[-1][0] + 0.22 * r * math.cos(half), mid[-1][1] - 0.22 * r * math.sin(half))
    cv.line([mid[-1], stem_end], (120, 110, 45), 0.1 * r)


def _lime(cv: _Canvas, c: float, r: float, rng: np.random.Generator) -> None:
    cv.ellipse(c, c, 0.78 * r, 0.64 * r, (70, 150, 42))
    for x, y in _in_ellipse(rng, 120, 0.7 * r, 0.56 * r):
        cv.ellipse(c + x, c + y, 0.015 * r, 0.015 * r, (92, 170, 58))
    cv.ellipse(c - 0.28 * r, c - 0.24 * r, 0.24 * r, 0.14 * r, (140, 205, 95))
    for dx in (-0.78, 0.78):
        cv.ellipse(c + dx * r, c, 0.07 * r, 0.06 * r, (55, 112, 32))


def _orange(cv: _Canvas, c: float, r: float, rng: np.random.Generator) -> None:
    cv.ellipse(c, c, 0.95 * r, 0.95 * r, (245, 140, 20))
    for x, y in _in_ellipse(rng, 320, 0.9 * r, 0.9 * r):  # dimpled peel
        cv.ellipse(c + x, c + y, 0.022 * r, 0.022 * r, (222, 118, 14))
    cv.ellipse(c - 0.38 * r, c - 0.38 * r, 0.22 * r, 0.16 * r, (255, 182, 80))
    cv.polygon(_star(c + 0.12 * r, c - 0.1 * r, 0.09 * r, 0.04 * r, 5), (105, 115, 35))


def _blueberry(cv: _Canvas, c: float, r: float, rng: np.random.Generator) -> None:
    cv.ellipse(c, c, 0.6 * r, 0.57 * r, (48, 58, 118))
    cv.ellipse(c - 0.18 * r, c - 0.2 * r, 0.28 * r, 0.22 * r, (88, 102, 152))  # waxy bloom
    jitter = rng.uniform(-0.02, 0.02, 2) * r
    cv.polygon(_star(c + jitter[0], c - 0.05 * r + jitter[1], 0.2 * r, 0.08 * r, 5), (28, 26, 55))
    cv.ellipse(c + jitter[0], c - 0.05 * r + jitter[1], 0.05 * r, 0.05 * r, (70, 60, 80))


def _kiwi(cv: _Canvas, c: float, r: float, rng: np.random.Generator) -> None:
    rx, ry = 0.95 * r, 0.72 * r
    cv.ellipse(c, c, rx, ry, (133, 94, 52))
    shades: list[Color] = [(105, 72, 36), (168, 128, 78), (150, 108, 60)]
    for (x, y), a, k in zip(_in_ellipse(rng, 700, rx * 1.02, ry * 1.02),
                            rng.uniform(0, 2 * math.pi, 700), rng.integers(0, 3, 700)):
        ln = 0.05 * r
        cv.line([(c + x, c + y), (c + x + ln * math.cos(a), c + y + ln * math.sin(a))], shades[k], 0.012 * r)
    cv.ellipse(c + rx, c, 0.06 * r, 0.07 * r, (72, 50, 26))


DRAWERS: dict[str, Callable[[_Canvas, float, float, np.random.Generator], None]] = {
    "Apple Red": _apple,
    "Banana": _banana,
    "Lime": _lime,
    "Orange": _orange,
    "Blueberry": _blueberry,
    "Kiwi": _kiwi,
}
KNOWN_CLASSES: tuple[str, ...] = tuple(DRAWERS)


@dataclass(frozen=True)
class SampleDataset:
    """What was written, so callers need not re-scan the directory."""

    root: Path
    files: list[Path]

    def counts(self) -> dict[tuple[str, str], int]:
        """Images per (split, class); relies on the `<split>/<Class>/x.jpg` layout."""
        return dict(Counter((f.parent.parent.name, f.parent.name) for f in self.files))


def _photograph(fruit: _Canvas, size: int, rng: np.random.Generator) -> Image.Image:
    """Pose, light and sensor noise vary per shot, like a fruit on a turntable."""
    return _shot(fruit, size, rng)[0]


def _shot(fruit: _Canvas, size: int, rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """The photograph on white and the mask of its fruit, to set it into another scene."""
    big = fruit.rgb.width
    angle = math.radians(rng.uniform(0.0, 360.0))
    k = 1.0 / rng.uniform(0.85, 1.15)
    tx, ty = rng.uniform(-3.0, 3.0, 2) * big / 100.0
    brightness = rng.uniform(0.9, 1.1)
    light = math.radians(rng.normal(-135.0, 15.0))
    ctr = big / 2.0
    a, b, d, e = k * math.cos(angle), k * math.sin(angle), -k * math.sin(angle), k * math.cos(angle)
    data = (a, b, ctr - a * (ctr + tx) - b * (ctr + ty), d, e, ctr - d * (ctr + tx) - e * (ctr + ty))
    bicubic, lanczos = Image.Resampling.BICUBIC, Image.Resampling.LANCZOS
    rgb = fruit.rgb.transform(fruit.rgb.size, Image.Transform.AFFINE, data, bicubic, fillcolor=WHITE)
    mask = fruit.mask.transform(fruit.mask.size, Image.Transform.AFFINE, data, bicubic, fillcolor=0)
    rgb, mask = rgb.resize((size, size), lanczos), mask.resize((size, size), lanczos)
    m = np.asarray(mask, dtype=np.float64) / 255.0
    # Edges darker than the middle and one side brighter read as a lit sphere.
    rim = np.asarray(mask.filter(ImageFilter.GaussianBlur(size * 0.06)), dtype=np.float64) / 255.0
    yy, xx = (np.mgrid[0:size, 0:size] - size / 2.0) / (size / 2.0)
    shade = brightness * (0.72 + 0.28 * rim) * (1.0 + 0.12 * (xx * math.cos(light) + yy * math.sin(light)))
    px = np.asarray(rgb, dtype=np.float64)
    lit = px * shade[..., None] + rng.normal(0.0, 2.5, px.shape)
    out = px + (lit - px) * m[..., None]  # background stays the untouched white
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8)), mask


def phone_subject(name: str, seed: int = 0) -> phone_photos.Subject:
    """The same fruit as the thumbnails of `name`, drawn at whatever size a photo needs."""
    if name not in DRAWERS:
        raise ValueError(f"unknown class {name!r}; known classes: {list(KNOWN_CLASSES)}")
    cls = KNOWN_CLASSES.index(name)

    def shoot(rng: np.random.Generator, size: int) -> tuple[Image.Image, Image.Image]:
        big = 2 * size  # drawing is cheap, so the fruit is redrawn rather than kept per size
        fruit = _Canvas(big)
        DRAWERS[name](fruit, big / 2.0, 0.32 * big, np.random.default_rng([seed, cls]))
        return _shot(fruit, size, rng)

    return phone_photos.Subject(name, cls, shoot)


def generate_sample_dataset(
    root: str | Path,
    *,
    classes: Sequence[str] | None = None,
    train_per_class: int = 16,
    test_per_class: int = 6,
    image_size: int = 100,
    seed: int = 0,
    phone_per_class: int = 0,
) -> SampleDataset:
    """Write `<root>/<split>/<Class>/*.jpg`; same arguments give identical bytes.

    Random streams are keyed by the class's position in KNOWN_CLASSES (not in
    `classes`), so asking for a subset reproduces the same images.
    `phone_per_class` adds that many 12-megapixel photos (phone_photos) per class
    to each split; they use their own streams, so the thumbnails do not change.
    """
    names = list(KNOWN_CLASSES if classes is None else classes)
    unknown = [n for n in names if n not in DRAWERS]
    if unknown:
        raise ValueError(f"unknown class(es) {unknown}; known classes: {list(KNOWN_CLASSES)}")
    if not names:
        raise ValueError(f"no classes requested; known classes: {list(KNOWN_CLASSES)}")
    if train_per_class < 0 or test_per_class < 0 or phone_per_class < 0:
        raise ValueError("images per class must be >= 0")
    if image_size < 16:
        raise ValueError("image_size must be >= 16")
    root = Path(root)
    big = image_size * _SUPERSAMPLE
    files: list[Path] = []
    for name in dict.fromkeys(names):
        cls = KNOWN_CLASSES.index(name)
        fruit = _Canvas(big)  # one physical fruit per class, photographed many times
        DRAWERS[name](fruit, big / 2.0, 0.32 * big, np.random.default_rng([seed, cls]))
        for split_idx, (split, n, prefix) in enumerate(
            [("Training", train_per_class, "r_"), ("Test", test_per_class, "")]
        ):
            out_dir = root / split / name
            out_dir.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                rng = np.random.default_rng([seed, cls, split_idx, i])
                path = out_dir / f"{prefix}{i}_{image_size}.jpg"
                _photograph(fruit, image_size, rng).save(path, "JPEG", quality=_JPEG_QUALITY)
                files.append(path)
    if phone_per_class:
        files += phone_photos.generate_phone_photos(
            root, (phone_subject(name, seed) for name in dict.fromkeys(names)), seed=seed,
            per_split={"Training": phone_per_class, "Test": phone_per_class},
        )
    return SampleDataset(root=root, files=sorted(files))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fruitfeat.sample_data",
        description="Draw a small deterministic Fruits-360-style image set.",
    )
    parser.add_argument("--out", required=True, type=Path, help="dataset root directory")
    parser.add_argument("--train-per-class", type=int, default=16)
    parser.add_argument("--test-per-class", type=int, default=6)
    parser.add_argument("--classes", default=",".join(KNOWN_CLASSES),
                        help=f"comma-separated subset of: {', '.join(KNOWN_CLASSES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=100)
    parser.add_argument("--phone-per-class", type=int, default=0,
                        help="also write N 12-megapixel phone photos per class to each split")
    args = parser.parse_args(argv)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    try:
        ds = generate_sample_dataset(
            args.out, classes=classes, train_per_class=args.train_per_class,
            test_per_class=args.test_per_class, image_size=args.image_size, seed=args.seed,
            phone_per_class=args.phone_per_class,
        )
    except ValueError as exc:
        parser.error(str(exc))
    n_classes = len(dict.fromkeys(classes))
    print(f"wrote {len(ds.files)} images in {n_classes} classes to {ds.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
