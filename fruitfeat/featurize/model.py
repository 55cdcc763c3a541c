"""MobileNetV2 backbone: read or built once on the driver, broadcast, built once per Python worker.

Two runtimes (``model.runtime``): ``onnxruntime`` broadcasts an ONNX model and workers run it with
ONNX Runtime without importing TensorFlow (``fruitfeat/featurize/onnx_export.py``); ``tensorflow``
broadcasts the ``.npz`` of the weight tensors and workers rebuild the Keras model with
``weights=None``. The ONNX model is a build artefact: ``fruitfeat weights`` writes it next to the
``.weights.h5`` (the source of truth), and a config naming the ``.onnx`` makes the driver read and
broadcast it as it is. A ``.weights.h5`` (or ``imagenet``/``random``) with ``onnxruntime`` is
converted on the driver for that run. Executors never touch the network or the weights file.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fruitfeat.errors import ConfigError, WeightsError

log = logging.getLogger(__name__)

PROVENANCE_SUFFIX = ".provenance.json"


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_backbone(image_size: int, weights: str | None = None):
    """MobileNetV2 without its classifier, global-average-pooled to 1280 features."""
    _quiet_tensorflow()
    import keras

    return keras.applications.MobileNetV2(
        input_shape=(image_size, image_size, 3), include_top=False, weights=weights, pooling="avg"
    )


RUNTIMES = ("tensorflow", "onnxruntime")
#: Where a run keeps the ONNX model its workers ran (``runtime: onnxruntime``); ``fruitfeat predict`` uses it.
ONNX_MODEL_FILE = "backbone.onnx"
#: A prebuilt ONNX backbone (``fruitfeat weights``) named by ``model.weights``.
ONNX_SUFFIX = ".onnx"


@dataclass(frozen=True)
class WeightsPayload:
    """What the driver broadcasts: the model the workers load, and where its weights came from.

    ``blob`` is what ``runtime`` needs: for ``tensorflow`` the weight tensors as one ``.npz``; for
    ``onnxruntime`` the serialized ONNX model (preprocessing and those same weights frozen in).
    ``sha256`` is the blob's digest; ``weights_sha256`` the digest of the ``.npz`` of the weights in
    both cases, so two runtimes fed the same weights are recognisably the same network.
    """

    blob: bytes
    sha256: str
    image_size: int
    provenance: dict[str, Any] = field(default_factory=dict)
    runtime: str = "tensorflow"
    weights_sha256: str | None = None

    @property
    def size_bytes(self) -> int:
        return len(self.blob)

    @property
    def precision(self) -> str:
        """``int8`` for a quantized ONNX model (its sidecar's ``quantization`` says how), else ``fp32``."""
        return self.provenance.get("precision", "fp32")


def serialize_weights(arrays: list[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    return buffer.getvalue()


def deserialize_weights(blob: bytes) -> list[np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        return [archive[f"arr_{i}"] for i in range(len(archive.files))]


def payload_from_model(
    model, image_size: int, provenance: dict[str, Any], runtime: str = "tensorflow"
) -> WeightsPayload:
    """Serialize a Keras model for the workers of ``runtime`` (driver side)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
    npz = serialize_weights(model.get_weights())
    weights_sha256 = hashlib.sha256(npz).hexdigest()
    if runtime == "tensorflow":
        return WeightsPayload(npz, weights_sha256, image_size, provenance, runtime, weights_sha256)
    from fruitfeat.featurize.onnx_export import DEFAULT_OPSET, keras_to_onnx

    key = (weights_sha256, image_size, DEFAULT_OPSET)
    blob = _CONVERTED.get(key)
    if blob is None:  # the same weights again in this driver (tests, notebooks): convert once
        blob = keras_to_onnx(model, image_size)
        _CONVERTED.clear()
        _CONVERTED[key] = blob
    provenance = {**provenance, "onnx": {"opset": DEFAULT_OPSET, "converter": _converter_version()}}
    return WeightsPayload(blob, hashlib.sha256(blob).hexdigest(), image_size, provenance, runtime, weights_sha256)


_CONVERTED: dict[tuple[str, int, int], bytes] = {}


def _converter_version() -> str:
    from importlib import metadata

    try:
        return f"tf2onnx {metadata.version('tf2onnx')}"
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "tf2onnx"


def _load_imagenet(image_size: int):
    try:
        return build_backbone(image_size, weights="imagenet")
    except Exception as exc:  # Keras raises bare Exception subclasses for download failures
        raise WeightsError(
            "could not download the ImageNet weights through Keras "
            f"({type(exc).__name__}: {exc}). Offline, run `make weights` and point model.weights at "
            "the file it writes; on EMR, stage that file in your bucket."
        ) from None


def load_weights_file(data: bytes, image_size: int):
    """A model with the weights of a Keras ``.weights.h5`` file given as bytes."""
    model = build_backbone(image_size)
    with tempfile.TemporaryDirectory(prefix="fruitfeat-weights-") as tmp:
        path = Path(tmp) / "backbone.weights.h5"
        path.write_bytes(data)
        try:
            model.load_weights(str(path))
        except Exception as exc:
            raise WeightsError(
                f"the weights file does not fit MobileNetV2 without top ({type(exc).__name__}: {exc})"
            ) from None
    return model


def check_provenance(data: bytes, provenance: dict[str, Any] | None, uri: str) -> dict[str, Any]:
    """Compare a weights file with the sha256 its provenance sidecar recorded."""
    digest = hashlib.sha256(data).hexdigest()
    if provenance is None:
        log.warning("weights %s have no %s sidecar: their origin is unknown", uri, PROVENANCE_SUFFIX)
        return {"source": "unknown (no provenance sidecar)", "file_sha256": digest}
    expected = provenance.get("file_sha256")
    if expected and expected != digest:
        raise WeightsError(
            f"{uri} has sha256 {digest} but its provenance records {expected}: the file was changed or "
            "truncated; rebuild it (`make weights`) or restage it"
        )
    return {**provenance, "file_sha256": digest}


def _read_provenance(weights: str, read_bytes: Callable[[str], bytes]) -> tuple[bytes, dict[str, Any]]:
    try:
        data = read_bytes(weights)
    except FileNotFoundError:
        raise WeightsError(f"weights file {weights} does not exist (run `make weights`?)") from None
    try:
        sidecar = json.loads(read_bytes(weights + PROVENANCE_SUFFIX))
    except FileNotFoundError:
        sidecar = None
    return data, {"uri": weights, **check_provenance(data, sidecar, weights)}


def onnx_input_size(blob: bytes) -> int | None:
    """The square input side an ONNX backbone was exported for (its ``images`` input is N x S x S x 3)."""
    import onnx

    dims = onnx.load_from_string(blob).graph.input[0].type.tensor_type.shape.dim
    sides = {d.dim_value for d in dims[1:3]}
    return sides.pop() if len(sides) == 1 and len(dims) == 4 else None


#: Operators only a quantized graph holds: what makes an ONNX model int8, whatever its sidecar says.
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"})


def onnx_precision(blob: bytes) -> str:
    """Operator types are plain strings in the serialized graph: found without importing onnx (~0.8 s)."""
    return "int8" if any(op.encode() in blob for op in QUANTIZED_OPS) else "fp32"


def check_precision(blob: bytes, provenance: dict[str, Any], precision: str) -> dict[str, Any]:
    """The provenance with the model's precision, read from its graph, or ConfigError if the config disagrees."""
    found = onnx_precision(blob)
    if found != precision:
        uri = provenance.get("uri", "the ONNX model")
        fix = "model.precision: int8" if found == "int8" else "model.precision: fp32, or name the .int8.onnx"
        raise ConfigError(
            f"model.precision is {precision} but {uri} is an {found} model: set {fix} "
            "(`fruitfeat weights --precision int8` writes the int8 model beside the fp32 one)"
        )
    return provenance if found == provenance.get("precision", "fp32") else {**provenance, "precision": found}


def payload_from_onnx(blob: bytes, image_size: int, provenance: dict[str, Any]) -> WeightsPayload:
    """The broadcast of a prebuilt ONNX backbone: no TensorFlow on the driver."""
    built_for = provenance.get("image_size") or onnx_input_size(blob)  # the sidecar's, checked with the sha256
    if built_for != image_size:
        raise WeightsError(
            f"{provenance.get('uri', 'the ONNX model')} takes {built_for} px images but featurize.image_size is "
            f"{image_size}: rebuild it with `fruitfeat weights --image-size {image_size}` or name the .weights.h5"
        )
    sha = hashlib.sha256(blob).hexdigest()
    return WeightsPayload(blob, sha, image_size, provenance, "onnxruntime", provenance.get("weights_sha256"))


def resolve_weights(
    weights: str,
    image_size: int,
    seed: int,
    read_bytes: Callable[[str], bytes],
    runtime: str = "tensorflow",
    precision: str = "fp32",
) -> WeightsPayload:
    """Driver side: obtain the weights named by the config and serialize them for the broadcast.

    ``read_bytes`` reads a URI (local or S3) so that this module needs no Spark or AWS client. An
    ``.onnx`` file is broadcast as it is, once its graph's precision matches ``precision``; anything
    else builds the Keras model (fp32 only: int8 needs calibration photos, a build step), and with
    ``runtime="onnxruntime"`` converts it to ONNX here.
    """
    if weights.endswith(ONNX_SUFFIX):
        data, provenance = _read_provenance(weights, read_bytes)
        return payload_from_onnx(data, image_size, check_precision(data, provenance, precision))
    if precision != "fp32":
        raise ConfigError(f"model.precision {precision} needs a quantized .onnx model in model.weights, not {weights}")
    if weights == "random":
        provenance: dict[str, Any] = {"source": "random", "seed": seed, "warning": "random weights: features are meaningless"}
        _quiet_tensorflow()
        import keras

        keras.utils.set_random_seed(seed)
        model = build_backbone(image_size)
    elif weights == "imagenet":
        provenance = {"source": "imagenet", "via": "keras.applications.MobileNetV2(weights='imagenet')"}
        model = _load_imagenet(image_size)
    else:
        data, provenance = _read_provenance(weights, read_bytes)
        model = load_weights_file(data, image_size)
    return payload_from_model(model, image_size, provenance, runtime)


# ---------------------------------------------------------------- executor side

_MODELS: dict[tuple[str, str, int, int], Callable[[np.ndarray], np.ndarray]] = {}
_MODELS_LOCK = threading.Lock()


def _set_threads(intra_op_threads: int) -> None:
    import tensorflow as tf

    if intra_op_threads <= 0:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already started in this worker: keep its first setting


def compile_inference(model, image_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 NHWC batch -> float32 (N, 1280), through one traced graph (eager calls leak memory)."""
    import keras
    import tensorflow as tf

    preprocess = keras.applications.mobilenet_v2.preprocess_input

    @tf.function(input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.uint8)])
    def infer(images):
        return model(preprocess(tf.cast(images, tf.float32)), training=False)

    def run(images: np.ndarray) -> np.ndarray:
        return infer(tf.constant(images)).numpy()

    return run


def inference_from_payload(payload: WeightsPayload, intra_op_threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """The worker's model for this payload, built on first use and kept for the worker's later tasks.

    ``onnxruntime`` payloads import onnxruntime only, never TensorFlow.
    """
    runtime = payload.runtime
    key = (runtime, payload.sha256, payload.image_size, intra_op_threads)
    with _MODELS_LOCK:
        if key in _MODELS:
            return _MODELS[key]
        if runtime == "onnxruntime":
            from fruitfeat.featurize.onnx_export import OnnxInference

            _MODELS.clear()
            _MODELS[key] = OnnxInference(payload.blob, intra_op_threads)
            return _MODELS[key]
        if runtime != "tensorflow":
            raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
        _quiet_tensorflow()
        _set_threads(intra_op_threads)
        model = build_backbone(payload.image_size)
        model.set_weights(deserialize_weights(payload.blob))
        _MODELS.clear()  # one model per worker: drop any from an earlier job in a reused worker
        _MODELS[key] = compile_inference(model, payload.image_size)
        return _MODELS[key]
