"""Photo bytes -> the network's RGB input, the same way on executors and in ``fruitfeat predict``."""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Fruits-360 photos are shot on white: transparent pixels become white, not black.
BACKGROUND = (255, 255, 255)


class ImageDecodeError(ValueError):
    """A file that cannot become a network input; ``reason`` is a stable class for the errors table."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB, compositing transparency on white and honouring EXIF orientation."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of letting Pillow clip at 255.
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() or 1.0
        scale = 255.0 / (65535.0 if peak > 255 else 255.0)
        image = Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


#: Magic bytes of formats people upload as photos that Pillow cannot decode without plugins.
_UNSUPPORTED_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypheix", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypavif", "AVIF"),
    (0, b"%PDF", "PDF"),
    (0, b"\xff\x0a", "JPEG XL"),
)
#: Pillow's own default (about 89 megapixels): larger images may be decompression bombs.
DEFAULT_MAX_PIXELS = 89_478_485


#: How a non-square photo becomes the network's square input (docs/choices.md, "Square input").
Fit = Literal["squash", "crop", "pad"]
FITS: tuple[str, ...] = ("squash", "crop", "pad")


@dataclass(frozen=True)
class DecodeOptions:
    """How photo bytes become the network input; a run records them so ``fruitfeat predict`` decodes alike."""

    fit: Fit = "crop"
    jpeg_draft: bool = True  #: decode large JPEGs at 1/2, 1/4 or 1/8 scale (DCT scaling): ~6x faster at 12 MP
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {self.fit!r}")

    def recorded(self) -> dict[str, Any]:
        """What changes the features: written to the manifest and the predictor."""
        return {k: v for k, v in asdict(self).items() if k != "max_pixels"}

    @classmethod
    def from_recorded(cls, recorded: dict[str, Any] | None) -> DecodeOptions:
        """Options a run recorded; runs that recorded none squashed photos to a square."""
        options = {"fit": "squash", **(recorded or {})}
        return cls(**{k: v for k, v in options.items() if k in ("fit", "jpeg_draft")})


def _unsupported_format(data: bytes) -> str | None:
    for offset, signature, name in _UNSUPPORTED_SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            return name
    head = data[:256].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:1024].lower()):
        return "SVG"
    return None


def _square(image: Image.Image, size: int, fit: Fit) -> Image.Image:
    """One resize to ``size x size``; the reducing gap first shrinks large non-JPEG images by cheap box steps."""
    width, height = image.size
    resample, gap = Image.Resampling.BILINEAR, 3.0
    if fit == "crop":  # the centred square of the short side
        side = min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        return image.resize((size, size), resample, box=(left, top, left + side, top + side), reducing_gap=gap)
    if fit == "pad" and width != height:  # the whole photo, the long side fitted, white bars on the short one
        scale = size / max(width, height)
        inner = (max(1, round(width * scale)), max(1, round(height * scale)))
        canvas = Image.new("RGB", (size, size), BACKGROUND)
        canvas.paste(image.resize(inner, resample, reducing_gap=gap), ((size - inner[0]) // 2, (size - inner[1]) // 2))
        return canvas
    if image.size == (size, size):
        return image
    return image.resize((size, size), resample, reducing_gap=gap)


def decode_image(data: bytes, size: int, options: DecodeOptions = DecodeOptions()) -> np.ndarray:
    """``size x size x 3`` uint8 array, or ImageDecodeError saying why not."""
    max_pixels = options.max_pixels
    if not data:
        raise ImageDecodeError("empty_file", "the file has zero bytes")
    unsupported = _unsupported_format(data)
    if unsupported:
        raise ImageDecodeError("unsupported_format", f"{unsupported} is not supported: convert it to JPEG or PNG")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size  # from the header: nothing decoded yet
                if width * height > max_pixels:
                    raise ImageDecodeError(
                        "decompression_bomb", f"{width}x{height} pixels is over the limit of {max_pixels}"
                    )
                if image.format == "JPEG" and options.jpeg_draft:  # DCT scaling: decode at 1/2, 1/4 or 1/8 size, still >= size
                    image.draft("RGB", (size, size))
                image.load()
                rgb = to_rgb(image)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError("decompression_bomb", str(exc)) from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not_an_image", "Pillow cannot identify the file as an image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError("corrupt_image", str(exc) or type(exc).__name__) from None
    return np.asarray(_square(rgb, size, options.fit), dtype=np.uint8)
