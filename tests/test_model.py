"""fruitfeat.featurize.model: the driver resolves the configured weights, the workers rebuild the network."""

import hashlib
import json

import numpy as np
import pytest

from fruitfeat.featurize import model as model_module
from fruitfeat.featurize.model import (
    PROVENANCE_SUFFIX,
    WeightsError,
    build_backbone,
    deserialize_weights,
    inference_from_payload,
    resolve_weights,
    serialize_weights,
)

from .conftest import TEST_IMAGE_SIZE, local_read_bytes


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_serialization_round_trip_is_exact():
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1.5], dtype=np.float64)]
    restored = deserialize_weights(serialize_weights(arrays))
    assert [a.dtype for a in restored] == [np.float32, np.float64]
    assert [a.shape for a in restored] == [(2, 3), (1,)]
    assert all(np.array_equal(a, b) for a, b in zip(arrays, restored))


def test_random_weights_are_keras_initialised_with_the_seed(random_payload):
    import keras

    keras.utils.set_random_seed(0)
    expected = build_backbone(TEST_IMAGE_SIZE).get_weights()
    restored = deserialize_weights(random_payload.blob)
    assert len(restored) == len(expected) == 260  # every MobileNetV2 variable, batch-norm statistics included
    assert all(np.array_equal(a, b) for a, b in zip(restored, expected))
    assert random_payload.runtime == "tensorflow" and random_payload.image_size == TEST_IMAGE_SIZE
    assert random_payload.sha256 == random_payload.weights_sha256 == sha256(random_payload.blob)
    assert random_payload.provenance == {"source": "random", "seed": 0, "warning": "random weights: features are meaningless"}

    other = resolve_weights("random", TEST_IMAGE_SIZE, 1, local_read_bytes)
    assert other.provenance["seed"] == 1
    assert not np.array_equal(deserialize_weights(other.blob)[0], restored[0])


def test_weights_file_is_loaded_and_provenance_checked(random_weights_file):
    payload = resolve_weights(f"file://{random_weights_file}", TEST_IMAGE_SIZE, 0, local_read_bytes)
    reference = build_backbone(TEST_IMAGE_SIZE)
    reference.load_weights(str(random_weights_file))
    assert all(np.array_equal(a, b) for a, b in zip(deserialize_weights(payload.blob), reference.get_weights()))
    assert payload.provenance == {
        "uri": f"file://{random_weights_file}",
        "source": "test-random",
        "file_sha256": sha256(random_weights_file.read_bytes()),
    }


def test_tampered_weights_file_is_refused(random_weights_file, tmp_path):
    copy = tmp_path / "copy.weights.h5"
    copy.write_bytes(random_weights_file.read_bytes() + b"\0")
    sidecar = random_weights_file.with_name(random_weights_file.name + PROVENANCE_SUFFIX)
    copy.with_name(copy.name + PROVENANCE_SUFFIX).write_text(sidecar.read_text())
    with pytest.raises(WeightsError, match=f"has sha256 {sha256(copy.read_bytes())} but its provenance records"):
        resolve_weights(f"file://{copy}", TEST_IMAGE_SIZE, 0, local_read_bytes)


def test_weights_without_sidecar_are_marked_unknown(random_weights_file, tmp_path):
    copy = tmp_path / "bare.weights.h5"
    copy.write_bytes(random_weights_file.read_bytes())
    payload = resolve_weights(f"file://{copy}", TEST_IMAGE_SIZE, 0, local_read_bytes)
    assert payload.provenance == {
        "uri": f"file://{copy}",
        "source": "unknown (no provenance sidecar)",
        "file_sha256": sha256(copy.read_bytes()),
    }


def test_missing_or_foreign_weights_file(tmp_path):
    with pytest.raises(WeightsError, match="does not exist .*make weights"):
        resolve_weights(f"file://{tmp_path}/none.weights.h5", TEST_IMAGE_SIZE, 0, local_read_bytes)
    foreign = tmp_path / "foreign.weights.h5"
    foreign.write_bytes(b"not hdf5")
    foreign.with_name(foreign.name + PROVENANCE_SUFFIX).write_text(json.dumps({"source": "x"}))
    with pytest.raises(WeightsError, match="does not fit MobileNetV2"):
        resolve_weights(f"file://{foreign}", TEST_IMAGE_SIZE, 0, local_read_bytes)


def test_imagenet_download_failure_says_what_to_do(monkeypatch):
    """The real Keras download path, with the network failure it meets offline."""
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.applications.mobilenet_v2.file_utils.get_file", offline)
    with pytest.raises(WeightsError, match="make weights"):
        resolve_weights("imagenet", TEST_IMAGE_SIZE, 0, local_read_bytes)


def test_worker_builds_the_model_once_and_matches_keras(random_payload):
    import keras

    model_module._MODELS.clear()
    infer = inference_from_payload(random_payload)
    assert inference_from_payload(random_payload) is infer  # the worker's later tasks reuse it
    assert list(model_module._MODELS) == [("tensorflow", random_payload.sha256, TEST_IMAGE_SIZE, 1)]

    images = np.random.default_rng(0).integers(0, 256, (3, TEST_IMAGE_SIZE, TEST_IMAGE_SIZE, 3), dtype=np.uint8)
    reference = build_backbone(TEST_IMAGE_SIZE)
    reference.set_weights(deserialize_weights(random_payload.blob))
    expected = reference.predict(keras.applications.mobilenet_v2.preprocess_input(images.astype("float32")), verbose=0)
    got = infer(images)
    assert got.shape == (3, 1280) and got.dtype == np.float32
    # Random weights give features of ~1e-11 (no trained batch-norm statistics): compare relatively.
    scale = np.abs(expected).max()
    assert scale > 0 and len({row.tobytes() for row in expected}) == 3
    np.testing.assert_allclose(got / scale, expected / scale, atol=1e-5)


def test_an_unknown_runtime_is_refused(random_payload):
    from dataclasses import replace

    with pytest.raises(ValueError, match="unknown runtime 'pytorch'"):
        inference_from_payload(replace(random_payload, runtime="pytorch", sha256="other"))
