"""INT8 MobileNetV2: static QDQ quantization of the fp32 ONNX backbone, refused when its features drift.

A build step (``fruitfeat weights --precision int8``), never part of a run: calibration needs photos
and CPU time. ONNX Runtime's quantization tools work on files, so each step runs in a temporary
directory and only bytes leave it. The gate compares int8 with fp32 features on held-out images that
calibration never saw, so a bad calibration is refused before any run can use it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fruitfeat.errors import QualityGateError
from fruitfeat.featurize.calibration import Holdout
from fruitfeat.featurize.onnx_export import OnnxInference

Method = Literal["minmax", "percentile", "entropy"]
METHODS: tuple[str, ...] = ("minmax", "percentile", "entropy")
#: Parts of the graph that can stay fp32: ``head`` is the preprocessing and the first Conv (raw pixels),
#: ``tail`` the last Conv to the features (what PCA and the classifier read).
FP32_PARTS: tuple[str, ...] = ("head", "tail")


@dataclass(frozen=True)
class QuantizeSettings:
    """How the int8 model is made. The defaults are the best of the variants measured on the sample data.

    Percentile 99.99 beat MinMax, Entropy and percentiles 99.999 and 99.9 (mean cosine to fp32 0.966
    against 0.937-0.962): MobileNetV2's activations have rare outliers that MinMax spends the 8 bits on.
    Keeping the first Conv or the last layers fp32 did not help; int8 symmetric activations were worse and
    3x slower (ONNX Runtime's x86 kernels are built for u8 activations x s8 weights); without
    quant_pre_process the depthwise convolutions' batch norms stay separate nodes quantized on their own
    (mean cosine 0.54). What remains is the cost of per-tensor 8-bit activations in MobileNetV2.
    """

    method: Method = "percentile"
    percentile: float = 99.99
    activation_type: Literal["quint8", "qint8"] = "quint8"  # u8 activations x s8 weights: the VNNI kernel
    activation_symmetric: bool = False
    per_channel: bool = True
    keep_fp32: tuple[str, ...] = ()
    preprocess: bool = True
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.method not in METHODS or not set(self.keep_fp32) <= set(FP32_PARTS):
            raise ValueError(f"method must be one of {METHODS} and keep_fp32 a subset of {FP32_PARTS}")


@dataclass(frozen=True)
class GateThresholds:
    """Set from the measured variants: the default clears them with margin, a broken calibration is far below.

    On held-out sample images the default gives mean cosine 0.966 and 5th percentile 0.945, the other
    variants 0.94-0.96 and 0.91-0.94 (the worst of them are refused), a calibration on black images 0.44
    and 0.34; two different photos' fp32 features have cosine 0.60 (``between_images_cosine``). A top-1
    drop is allowed one held-out image of slack, so that a small holdout does not fail on one photo.
    """

    min_mean_cosine: float = 0.95
    min_p5_cosine: float = 0.92
    max_top1_drop: float = 0.01


class _Batches:
    """The calibration images as uint8 NHWC batches, in the CalibrationDataReader protocol."""

    def __init__(self, input_name: str, images: np.ndarray, batch_size: int) -> None:
        self._feeds = [{input_name: images[i:i + batch_size]} for i in range(0, len(images), batch_size)]
        self._next = iter(self._feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._next, None)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self._next

    def __len__(self) -> int:
        return len(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next = iter(self._feeds[start_index:end_index])


def fp32_node_names(model: Any, parts: tuple[str, ...]) -> list[str]:
    """Node names of the parts kept fp32, found by position (converter names differ between exports)."""
    nodes = list(model.graph.node)
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    keep: list[str] = []
    if "head" in parts:
        keep += [n.name for n in nodes[: convs[0] + 1]]
    if "tail" in parts:
        keep += [n.name for n in nodes[convs[-1]:]]
    return list(dict.fromkeys(keep))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantization prints progress and logs per tensor on the root logger: keep warnings only."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _quantize(fp32_onnx: bytes, calibration: np.ndarray, settings: QuantizeSettings) -> tuple[bytes, list[str]]:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="fruitfeat-quantize-") as tmp, _quiet():
        source, prepared, out = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(fp32_onnx)
        if settings.preprocess:
            quant_pre_process(str(source), str(prepared))
        else:
            prepared = source
        model = onnx.load(str(prepared))
        excluded = fp32_node_names(model, settings.keep_fp32)
        method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                  "entropy": CalibrationMethod.Entropy}[settings.method]
        activations = QuantType.QUInt8 if settings.activation_type == "quint8" else QuantType.QInt8
        quantize_static(
            str(prepared), str(out), _Batches(model.graph.input[0].name, calibration, settings.batch_size),
            quant_format=QuantFormat.QDQ, per_channel=settings.per_channel, activation_type=activations,
            weight_type=QuantType.QInt8, nodes_to_exclude=excluded, calibrate_method=method,
            extra_options={
                "ActivationSymmetric": settings.activation_symmetric,
                "CalibStridedMinMax": 1,  # one batch of activations in memory at a time, for every method
                "CalibPercentile": settings.percentile,
            },
        )
        return out.read_bytes(), excluded


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _centroid_top1(train: np.ndarray, train_y: np.ndarray, test: np.ndarray, test_y: np.ndarray) -> float:
    """Nearest class centroid on L2-normalised features: no fitting to tune, so a drop is the features'."""
    classes = np.unique(train_y)
    centroids = _unit(np.stack([_unit(train[train_y == c]).mean(axis=0) for c in classes]))
    return float(np.mean(classes[np.argmax(_unit(test) @ centroids.T, axis=1)] == test_y))


def _top1(fp32: np.ndarray, int8: np.ndarray, labels: tuple[str, ...] | None) -> dict[str, Any] | None:
    """Top-1 of a classifier trained on one half of each class and tested on the other, per precision."""
    if labels is None:
        return None
    y = np.asarray(labels)
    names, counts = np.unique(y, return_counts=True)
    usable = np.isin(y, names[counts >= 2])
    if len(names[counts >= 2]) < 2:
        return None
    rank = np.array([np.sum(y[:i] == y[i]) for i in range(len(y))])
    train, test = usable & (rank % 2 == 0), usable & (rank % 2 == 1)
    fp32_top1 = _centroid_top1(fp32[train], y[train], fp32[test], y[test])
    int8_top1 = _centroid_top1(int8[train], y[train], int8[test], y[test])
    cross = _centroid_top1(fp32[train], y[train], int8[test], y[test])
    return {"classifier": "nearest centroid, cosine", "test_images": int(test.sum()),
            "fp32": fp32_top1, "int8": int8_top1, "int8_on_fp32_centroids": cross, "drop": fp32_top1 - int8_top1}


def fidelity(fp32: np.ndarray, int8: np.ndarray, labels: tuple[str, ...] | None = None) -> dict[str, Any]:
    """How close int8 features are to fp32 ones, per image, with the cosine of different images for scale."""
    unit = _unit(fp32)
    cos = np.sum(unit * _unit(int8), axis=1)
    pairs = len(fp32) * (len(fp32) - 1)
    return {
        "images": len(fp32),
        "mean_cosine": float(cos.mean()),
        "p5_cosine": float(np.percentile(cos, 5)),
        "min_cosine": float(cos.min()),
        "relative_l2": float(np.mean(np.linalg.norm(int8 - fp32, axis=1) / np.linalg.norm(fp32, axis=1))),
        "between_images_cosine": float(((unit @ unit.T).sum() - len(fp32)) / pairs) if pairs else None,
        "top1": _top1(fp32, int8, labels),
    }


def check_gate(figures: dict[str, Any], thresholds: GateThresholds) -> None:
    """Raise QualityGateError listing every figure past its threshold."""
    failures = []
    if figures["mean_cosine"] < thresholds.min_mean_cosine:
        failures.append(f"mean cosine {figures['mean_cosine']:.4f} < {thresholds.min_mean_cosine}")
    if figures["p5_cosine"] < thresholds.min_p5_cosine:
        failures.append(f"5th-percentile cosine {figures['p5_cosine']:.4f} < {thresholds.min_p5_cosine}")
    top1 = figures["top1"]
    if top1 is not None and top1["drop"] > max(thresholds.max_top1_drop, 1 / top1["test_images"]) + 1e-9:
        failures.append(f"top-1 {top1['int8']:.1%} against {top1['fp32']:.1%} for fp32")
    if failures:
        raise QualityGateError(
            f"the int8 model's features drift from fp32 on {figures['images']} held-out images: "
            f"{'; '.join(failures)}. Nothing was written; calibrate on photos like the ones the runs see "
            "(--calibration), or try another --calibrate-method"
        )


def features(model: bytes, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    infer = OnnxInference(model, 0)
    return np.concatenate([infer(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def quantize_model(
    fp32_onnx: bytes,
    calibration: np.ndarray | list[np.ndarray],
    holdout: Holdout,
    settings: QuantizeSettings = QuantizeSettings(),
    thresholds: GateThresholds = GateThresholds(),
) -> tuple[bytes, dict[str, Any]]:
    """The int8 model and what to record about it, or QualityGateError when the gate refuses it."""
    int8, excluded = _quantize(fp32_onnx, np.stack(list(calibration)).astype(np.uint8, copy=False), settings)
    figures = fidelity(features(fp32_onnx, holdout.images), features(int8, holdout.images), holdout.labels)
    check_gate(figures, thresholds)
    method = {"format": "QDQ", "weight_type": "QInt8", "nodes_kept_fp32": excluded, **asdict(settings)}
    method["keep_fp32"] = list(settings.keep_fp32)
    return int8, {"method": method, "gate": {"figures": figures, "thresholds": asdict(thresholds)}}
