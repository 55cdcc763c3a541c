import io

import numpy as np
import pytest
from PIL import Image

from fruitfeat.featurize.decode import DecodeOptions, ImageDecodeError, decode_image

from .bad_inputs import MAX_IMAGE_PIXELS, bad_files, good_variants


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_jpeg_is_resized_to_the_network_input():
    data = encode(Image.new("RGB", (100, 100), (200, 30, 40)), "JPEG", quality=95)
    array = decode_image(data, 32)
    assert array.shape == (32, 32, 3) and array.dtype == np.uint8
    assert np.allclose(array.reshape(-1, 3).mean(axis=0), (200, 30, 40), atol=3)


def test_transparency_becomes_white_background():
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    rgba.putpixel((5, 5), (255, 0, 0, 255))
    array = decode_image(encode(rgba), 10)
    assert tuple(array[0, 0]) == (255, 255, 255)
    assert tuple(array[5, 5]) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "I;16"])
def test_other_modes_become_rgb(mode):
    source = Image.new("RGB", (8, 8), (90, 90, 90))
    if mode == "I;16":
        converted = source.convert("L").convert(mode)
    elif mode == "P":
        converted = source.convert("P", palette=Image.Palette.ADAPTIVE)
    else:
        converted = source.convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    array = decode_image(encode(converted, fmt), 8)
    assert array.shape == (8, 8, 3)
    assert np.allclose(array, 90, atol=25)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (20, 10), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 10, 10))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    array = decode_image(encode(image, "JPEG", exif=exif.tobytes(), quality=100), 20)
    top, bottom = array[:5].reshape(-1, 3).mean(axis=0), array[-5:].reshape(-1, 3).mean(axis=0)
    assert top[0] > 200 and bottom[2] > 200  # the red half is now on top


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty_file"),
        (b"this is a text file named .jpg", "not_an_image"),
    ],
)
def test_bad_bytes_give_a_reason(data, reason):
    with pytest.raises(ImageDecodeError) as err:
        decode_image(data, 32)
    assert err.value.reason == reason


def test_truncated_jpeg_is_corrupt():
    data = encode(Image.effect_noise((100, 100), 50).convert("RGB"), "JPEG")
    with pytest.raises(ImageDecodeError) as err:
        decode_image(data[: len(data) // 2], 32)
    assert err.value.reason == "corrupt_image"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("photo.jpeg", "HEIC is not supported: convert it to JPEG or PNG"),
        ("drawing.png", "SVG is not supported: convert it to JPEG or PNG"),
        ("bomb.png", "2000x2000 pixels is over the limit of 1000000"),
    ],
)
def test_formats_and_sizes_the_decoder_refuses(name, message):
    data, reason = bad_files()[name]
    with pytest.raises(ImageDecodeError) as err:
        decode_image(data, 32, DecodeOptions(max_pixels=MAX_IMAGE_PIXELS))
    assert (err.value.reason, err.value.message) == (reason, message)


def test_every_good_variant_decodes_to_the_same_picture():
    """Grey, palette, alpha, CMYK, 16-bit, EXIF-rotated: the network sees about the same red disc."""
    decoded = {name: decode_image(data, 32).astype(np.int16) for name, data in good_variants(0).items()}
    assert all(a.shape == (32, 32, 3) for a in decoded.values())
    centre = decoded["rgb.jpg"][16, 16]
    assert centre[0] > 150 and centre[1] < 70  # red
    for name in ("palette.png", "alpha.png", "cmyk.jpg", "rotated.jpg", "upper.JPG"):
        assert np.abs(decoded[name] - decoded["rgb.jpg"]).mean() < 8, name
    luminance = decoded["rgb.jpg"] @ np.array([0.299, 0.587, 0.114])  # Pillow's RGB -> L
    for name in ("grey.jpg", "sixteen_bit.png"):  # no colour left, the same brightness in all three channels
        assert np.array_equal(decoded[name][..., 0], decoded[name][..., 2]), name
        assert np.abs(decoded[name][..., 0] - luminance).mean() < 8, name


def _photo(width: int, height: int) -> np.ndarray:
    """A smooth phone-sized picture (gradients), as a camera JPEG holds."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x / 12) % 256, (y / 9) % 256, ((x + y) / 20) % 256], -1).astype(np.uint8)


def test_a_large_jpeg_decoded_at_reduced_scale_matches_the_full_decode():
    """JPEG draft mode (DCT scaling to at least the network's size) gives the full decode's pixels."""
    data = encode(Image.fromarray(_photo(2016, 1512)), "JPEG", quality=90)
    with Image.open(io.BytesIO(data)) as image:
        full = np.asarray(image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR), dtype=np.int16)
    drafted = decode_image(data, 224, DecodeOptions(fit="squash")).astype(np.int16)
    assert drafted.shape == (224, 224, 3)
    assert np.abs(drafted - full).mean() < 1.0  # of 255 levels


def test_a_sideways_large_jpeg_with_its_exif_orientation_equals_the_upright_one():
    upright = Image.fromarray(_photo(1512, 2016))  # portrait, as seen
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: a viewer turns it 90 degrees clockwise
    sideways = encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90, exif=exif)
    straight = encode(upright, "JPEG", quality=90)
    diff = np.abs(decode_image(sideways, 224).astype(np.int16) - decode_image(straight, 224).astype(np.int16))
    assert diff.mean() < 2.0


def _bands(width: int, height: int) -> Image.Image:
    """Red left third, green middle, blue right third: where each lands shows how the photo was squared."""
    array = np.zeros((height, width, 3), np.uint8)
    thirds = np.array_split(np.arange(width), 3)
    for channel, columns in enumerate(thirds):
        array[:, columns, channel] = 255
    return Image.fromarray(array)


def test_squash_keeps_the_whole_photo_stretched_to_a_square():
    out = decode_image(encode(_bands(300, 100)), 30, DecodeOptions(fit="squash"))
    assert out.shape == (30, 30, 3)
    assert out[15, 2].tolist() == [255, 0, 0] and out[15, 15].tolist() == [0, 255, 0] and out[15, 27].tolist() == [0, 0, 255]


def test_crop_keeps_the_centred_square_of_the_short_side():
    out = decode_image(encode(_bands(300, 100)), 30)  # the default
    assert (out[:, 1:-1] == [0, 255, 0]).all()  # the centre 100x100 is green; the filter blends the outer columns
    assert out[15, 0].tolist() == [30, 225, 0] and out[15, -1].tolist() == [0, 225, 30]


def test_pad_fits_the_long_side_and_fills_the_rest_with_white():
    out = decode_image(encode(_bands(300, 100)), 30, DecodeOptions(fit="pad"))
    assert (out[:9] == 255).all() and (out[-9:] == 255).all()  # 10 rows of photo in the middle of 30
    assert out[15, 1].tolist() == [255, 0, 0] and out[15, 28].tolist() == [0, 0, 255]


def test_square_photos_are_the_same_whatever_the_fit():
    data = encode(Image.fromarray(_photo(120, 120)), "JPEG", quality=95)
    outputs = [decode_image(data, 64, DecodeOptions(fit=fit)) for fit in ("squash", "crop", "pad")]
    assert np.array_equal(outputs[0], outputs[1]) and np.array_equal(outputs[0], outputs[2])


def test_draft_mode_can_be_switched_off_for_the_full_decode():
    data = encode(Image.fromarray(_photo(2016, 1512)), "JPEG", quality=90)
    with Image.open(io.BytesIO(data)) as image:
        full = np.asarray(image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR, reducing_gap=3.0))
    assert np.array_equal(decode_image(data, 224, DecodeOptions(fit="squash", jpeg_draft=False)), full)


def test_a_large_png_is_reduced_before_the_final_resize_without_changing_the_picture():
    picture = Image.fromarray(_photo(2400, 1800))
    plain = np.asarray(picture.resize((224, 224), Image.Resampling.BILINEAR), dtype=np.int16)
    assert np.abs(decode_image(encode(picture), 224, DecodeOptions(fit="squash")).astype(np.int16) - plain).mean() < 1.0


def test_decode_options_round_trip_through_what_a_run_records():
    options = DecodeOptions(fit="pad", jpeg_draft=False, max_pixels=10)
    assert options.recorded() == {"fit": "pad", "jpeg_draft": False}
    assert DecodeOptions.from_recorded(options.recorded()) == DecodeOptions(fit="pad", jpeg_draft=False)
    assert DecodeOptions.from_recorded({"fit": "crop"}) == DecodeOptions()
    assert DecodeOptions.from_recorded(None) == DecodeOptions(fit="squash")  # runs that recorded nothing squashed
    with pytest.raises(ValueError, match="fit must be one of"):
        DecodeOptions(fit="stretch")
