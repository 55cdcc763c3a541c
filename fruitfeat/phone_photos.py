"""Phone-camera-size photos of a subject on a tabletop.

Thumbnails exercise the job's logic; a phone app sends 12-megapixel JPEGs of a
few megabytes, some stored sideways with an EXIF orientation tag, and decode
time, memory and orientation handling only show with files like that. This
module builds the scene (surface, light, shadow, sensor noise) and the file;
what is photographed comes from the caller as a `Subject`, so it knows no fruit.

Measured on one core: the defaults (12 MP, quality 90, noise 5) give 2.9-3.1 MB
in about 0.85 s a photo; `megapixels=48, quality=98, noise=8` gives about 30 MB
(8064x6048) in about 2-3 s and 0.75 GB peak memory.
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
from PIL import Image, ImageChops, ImageFilter

#: A 12 MP phone sensor, landscape; other sizes keep its 4:3 shape.
REFERENCE_SIZE = (4032, 3024)
ORIENTATION_TAG = 0x0112
#: How the upright picture is turned before storing, so EXIF orientation turns it back.
_STORED = {
    1: None,
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,  # viewer turns it 90 degrees clockwise
    8: Image.Transpose.ROTATE_270,  # viewer turns it 90 degrees counter-clockwise
}
_STREAM = 7  # keeps photo streams apart from other users of the same seed
_SMALL = 8  # slowly varying light is computed at 1/8 size and enlarged
_MAX_FRAME = 1024  # posing the subject larger costs time and adds little under sensor noise
DEFAULT_SPLITS: Mapping[str, int] = {"Training": 1, "Test": 1}

#: Draws one pose of the subject, lit, on white, in a square frame of the given side: (RGB, L mask).
Shoot = Callable[[np.random.Generator, int], tuple[Image.Image, Image.Image]]


@dataclass(frozen=True)
class Subject:
    """What is photographed; `key` is a stable id so a subset gives the same files."""

    name: str
    key: int
    shoot: Shoot


def phone_size(megapixels: float = 12.0, *, portrait: bool = False) -> tuple[int, int]:
    """(width, height) of a 4:3 frame; 12 gives 4032x3024, 48 gives 8064x6048."""
    if megapixels <= 0:
        raise ValueError("megapixels must be > 0")
    f = math.sqrt(megapixels / 12.0)
    w, h = (max(16, round(side * f / 16) * 16) for side in REFERENCE_SIZE)
    return (h, w) if portrait else (w, h)


def _place(mask: Image.Image, rng: np.random.Generator, width: int, height: int) -> tuple[float, int, int]:
    """Scale and top-left corner: 45-70 % of the short side, a little off centre."""
    x0, y0, x1, y1 = mask.getbbox() or (0, 0, mask.width, mask.height)
    scale = rng.uniform(0.45, 0.70) * min(width, height) / max(x1 - x0, y1 - y0)
    fw, fh = (x1 - x0) * scale, (y1 - y0) * scale
    cx = width / 2 + rng.uniform(-0.08, 0.08) * width
    cy = height / 2 + rng.uniform(-0.08, 0.08) * height
    left = min(max(cx - fw / 2, 0.0), width - fw)
    top = min(max(cy - fh / 2, 0.0), height - fh)
    return scale, round(left), round(top)


def _low_res_field(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """Smooth random blotches: a few random values per axis, enlarged bicubically."""
    coarse = Image.fromarray(rng.standard_normal(cells).astype(np.float32))
    return np.asarray(coarse.resize((shape[1], shape[0]), Image.Resampling.BICUBIC), dtype=np.float32)


def _light(rng: np.random.Generator, w: int, h: int, shadow: Image.Image) -> np.ndarray:
    """Brightness over the surface at 1/8 size: gradient, vignette, blotches, shadow."""
    ys = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    xs = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    ang = rng.uniform(0.0, 2 * math.pi)
    gradient = 1.0 + rng.uniform(0.05, 0.15) * (xs * math.cos(ang) + ys * math.sin(ang))
    vignette = 1.0 - rng.uniform(0.12, 0.25) * (xs * xs + ys * ys) / 2.0
    blotches = 1.0 + rng.uniform(0.02, 0.05) * _low_res_field(rng, (h, w), (6, 8))
    dark = np.asarray(shadow, dtype=np.float32) / 255.0
    return gradient * vignette * blotches * (1.0 - rng.uniform(0.25, 0.4) * dark)


def _shadow(mask: Image.Image, scale: float, left: int, top: int, w: int, h: int) -> Image.Image:
    """The subject's footprint, shifted down and aside and blurred, at 1/8 size."""
    s = scale / _SMALL
    small = mask.resize((max(1, round(mask.width * s)), max(1, round(mask.height * s))), Image.Resampling.BILINEAR)
    canvas = Image.new("L", (w, h), 0)
    reach = 0.06 * max(small.size)
    canvas.paste(small, (round(left / _SMALL + reach / 2), round(top / _SMALL + reach)))
    return canvas.filter(ImageFilter.GaussianBlur(max(1.0, reach)))


def _surface(rng: np.random.Generator, width: int, height: int, light: np.ndarray) -> Image.Image:
    """A light, slightly tinted table or wall with a fine grain, built at half size."""
    hw, hh = (width + 1) // 2, (height + 1) // 2
    tint = rng.uniform(190.0, 232.0) * (1.0 + rng.uniform(-0.03, 0.03, 3)).astype(np.float32)
    lit = Image.fromarray(light).resize((hw, hh), Image.Resampling.BICUBIC)
    half = np.asarray(lit, dtype=np.float32)[..., None] * tint
    grain = rng.standard_normal((hh, hw), dtype=np.float32) * np.float32(rng.uniform(2.0, 4.0))
    half += grain[..., None]
    rgb = Image.fromarray(np.clip(half + 0.5, 0, 255).astype(np.uint8))
    return rgb.resize((width, height), Image.Resampling.BILINEAR)


def _sensor_noise(img: Image.Image, rng: np.random.Generator, sigma: float) -> Image.Image:
    """Gaussian luma noise (phones clean up colour noise), from random bytes through a quantile table."""
    if sigma <= 0:
        return img
    dist = NormalDist(0.0, sigma)
    table = [min(255, max(0, 128 + round(dist.inv_cdf((k + 0.5) / 256)))) for k in range(256)]
    luma = Image.fromarray(rng.integers(0, 256, (img.height, img.width), dtype=np.uint8)).point(table)
    return ImageChops.add(img, Image.merge("RGB", (luma, luma, luma)), scale=1.0, offset=-128)


def phone_photo(
    subject: Subject,
    seed: int | Sequence[int] = 0,
    *,
    width: int = REFERENCE_SIZE[0],
    height: int = REFERENCE_SIZE[1],
    quality: int = 90,
    orientation: int = 1,
    noise: float = 5.0,
) -> bytes:
    """JPEG bytes of one upright `width` x `height` shot; same arguments, same bytes.

    With orientation 3, 6 or 8 the pixels are stored turned so that a viewer
    applying the EXIF Orientation tag (always written) sees the same upright
    shot as orientation 1 gives for the same seed.
    """
    if orientation not in _STORED:
        raise ValueError(f"orientation must be one of {sorted(_STORED)}")
    rng = np.random.default_rng(seed)
    rgb, mask = subject.shoot(rng, min(_MAX_FRAME, max(64, min(width, height) // 3)))
    box = mask.getbbox() or (0, 0, mask.width, mask.height)
    rgb, mask = rgb.crop(box), mask.filter(ImageFilter.MinFilter(3)).crop(box)  # no white fringe
    scale, left, top = _place(mask, rng, width, height)
    sw, sh = -(-width // _SMALL), -(-height // _SMALL)
    light = _light(rng, sw, sh, _shadow(mask, scale, left, top, sw, sh))
    photo = _surface(rng, width, height, light)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    bicubic = Image.Resampling.BICUBIC
    photo.paste(rgb.resize(size, bicubic), (left, top), mask.resize(size, bicubic))
    photo = _sensor_noise(photo, rng, noise)
    turn = _STORED[orientation]
    stored = photo if turn is None else photo.transpose(turn)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def shot_layout(index: int, rotate_every: int) -> tuple[bool, int]:
    """(portrait?, EXIF orientation) of a subject's index-th photo.

    Portrait and landscape alternate; every `rotate_every`-th photo (0: none)
    is stored sideways, alternately needing orientation 6 and 8.
    """
    portrait = index % 2 == 1
    if rotate_every <= 0 or index % rotate_every != rotate_every - 1:
        return portrait, 1
    return portrait, 6 if (index // rotate_every) % 2 == 0 else 8


def generate_phone_photos(
    root: str | Path,
    subjects: Iterable[Subject],
    *,
    per_split: Mapping[str, int] = DEFAULT_SPLITS,
    seed: int = 0,
    megapixels: float = 12.0,
    quality: int = 90,
    noise: float = 5.0,
    rotate_every: int = 3,
) -> list[Path]:
    """Write `<root>/<split>/<name>/[r_]phone_<i>.jpg` (Training gets the `r_` prefix).

    A photo's layout (shot_layout) follows `subject.key + i`, so even one photo
    per class and split gives landscape, portrait and sideways files. Each photo
    has its own random stream, so changing one count leaves the other files alone.
    """
    if any(n < 0 for n in per_split.values()):
        raise ValueError("photos per split must be >= 0")
    root = Path(root)
    files: list[Path] = []
    for subject in subjects:
        for split, n in per_split.items():
            out_dir = root / split / subject.name
            out_dir.mkdir(parents=True, exist_ok=True)
            prefix = "r_phone_" if split == "Training" else "phone_"
            for i in range(n):
                portrait, orientation = shot_layout(subject.key + i, rotate_every)
                width, height = phone_size(megapixels, portrait=portrait)
                data = phone_photo(
                    subject, [seed, subject.key, zlib.crc32(split.encode()), i, _STREAM],
                    width=width, height=height, quality=quality, orientation=orientation, noise=noise,
                )
                path = out_dir / f"{prefix}{i}.jpg"
                path.write_bytes(data)
                files.append(path)
    return sorted(files)
