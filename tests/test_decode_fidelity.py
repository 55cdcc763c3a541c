"""Phone photos through the real MobileNetV2: what decoding choices do to the features themselves.

Pixels can differ a little while features stay put, or the reverse; these tests compare 1280-d
features of the network `make weights` builds (``make test`` builds it first).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fruitfeat.featurize.decode import FITS, DecodeOptions, decode_image
from fruitfeat.featurize.onnx_export import OnnxInference
from fruitfeat.phone_photos import phone_photo
from fruitfeat.sample_data import KNOWN_CLASSES, phone_subject

REAL_ONNX = Path(__file__).resolve().parents[1] / "data" / "weights" / "mobilenetv2_notop.onnx"
SIZE = 224  # the real model's input


@pytest.fixture(scope="module")
def network() -> OnnxInference:
    if not REAL_ONNX.exists():
        pytest.fail(f"{REAL_ONNX} is missing: run `make weights` (make test does it first)")
    return OnnxInference(REAL_ONNX.read_bytes(), intra_op_threads=0)


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    """One 12 MP landscape photo per sample class, as a phone stores it (quality 90, ~3 MB)."""
    return {name: phone_photo(phone_subject(name), seed=[3, i]) for i, name in enumerate(KNOWN_CLASSES)}


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("fit", FITS)
def test_draft_decoding_gives_nearly_the_features_of_full_decoding(network, photos, fit):
    def features(draft: bool) -> np.ndarray:
        options = DecodeOptions(fit=fit, jpeg_draft=draft)
        return network(np.stack([decode_image(data, SIZE, options) for data in photos.values()]))

    similarity = cosine(features(True), features(False))
    assert similarity.min() >= 0.99, dict(zip(photos, similarity.round(4)))


@pytest.mark.parametrize("orientation", [6, 8])
def test_a_photo_stored_sideways_gets_the_features_of_its_upright_copy(network, orientation):
    subject, width, height = phone_subject("Banana"), 3024, 4032  # portrait, as a phone held upright takes it
    upright = phone_photo(subject, seed=11, width=width, height=height)
    sideways = phone_photo(subject, seed=11, width=width, height=height, orientation=orientation)
    assert upright != sideways  # different pixels on disk
    got = network(np.stack([decode_image(data, SIZE) for data in (upright, sideways)]))
    assert cosine(got[:1], got[1:])[0] >= 0.999
    # A photo decoded without its orientation (turned 90 degrees) is much further away: the tag matters.
    turned = network(np.rot90(decode_image(upright, SIZE), 1)[None].copy())
    assert cosine(got[:1], turned)[0] < 0.99
