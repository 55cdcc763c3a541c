"""Photo bytes -> the network's RGB input, the same way on executors and in ``fruitfeat predict``."""

from __future__ import annotations

import io
import warnings

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


def _unsupported_format(data: bytes) -> str | None:
    for offset, signature, name in _UNSUPPORTED_SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            return name
    head = data[:256].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:1024].lower()):
        return "SVG"
    return None


def decode_image(data: bytes, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``size x size x 3`` uint8 array, or ImageDecodeError saying why not."""
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
                if image.format == "JPEG":  # DCT scaling: decode at 1/2, 1/4 or 1/8 size, still >= size
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
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)
