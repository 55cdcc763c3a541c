"""MobileNetV2 as an ONNX model, run with ONNX Runtime instead of TensorFlow on the executors.

Why: a Python worker that only needs inference then imports onnxruntime (~0.1 s, ~60 MB) instead of
TensorFlow (seconds, ~1 GB), and ONNX Runtime is faster per image on CPU. The driver converts the
Keras model once (:func:`keras_to_onnx`, needs TensorFlow + tf2onnx + onnx); executors get the
serialized model bytes (e.g. in a broadcast) and build :class:`OnnxInference` from them, which
imports only onnxruntime and numpy.

The exported graph takes ``uint8`` NHWC images named ``images`` with a dynamic batch dimension,
applies MobileNetV2's own preprocessing (``x / 127.5 - 1``) inside the graph, and returns
``features``: float32 ``(N, 1280)``. Workers therefore feed the decoded uint8 arrays as they are.

Wired by ``model.runtime: onnxruntime``: ``fruitfeat.featurize.model.payload_from_model`` converts on the
driver and ``fruitfeat.featurize.model.inference_from_payload`` builds :class:`OnnxInference` on the workers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

INPUT_NAME = "images"
OUTPUT_NAME = "features"
BATCH_DIM = "batch"
# tf2onnx 1.17 knows opsets up to 18; 17 runs on every onnxruntime >= 1.13.
DEFAULT_OPSET = 17


def keras_to_onnx(model: Any, image_size: int, opset: int = DEFAULT_OPSET) -> bytes:
    """Serialized ONNX model of ``uint8 images (N, S, S, 3) -> float32 features (N, 1280)``.

    Driver side only: imports TensorFlow, keras and tf2onnx. The preprocessing is the very function
    the TensorFlow path uses (``keras.applications.mobilenet_v2.preprocess_input``), traced into the
    graph, so both paths see the same network input. The weights are frozen into the model as
    constants (about 9 MB for MobileNetV2 without top).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import onnx
    import tensorflow as tf
    import tf2onnx

    preprocess = keras.applications.mobilenet_v2.preprocess_input
    spec = (tf.TensorSpec([None, image_size, image_size, 3], tf.uint8, name=INPUT_NAME),)

    @tf.function(input_signature=spec)
    def infer(images):
        return {OUTPUT_NAME: model(preprocess(tf.cast(images, tf.float32)), training=False)}

    proto, _ = tf2onnx.convert.from_function(infer, input_signature=spec, opset=opset)
    # tf2onnx names the unknown batch dimension "unk__NNN": give input and output the same name so
    # that the model says they share it.
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM
    proto.doc_string = f"MobileNetV2 features: uint8 NHWC {image_size}x{image_size} -> float32 (N, features)"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


class OnnxInference:
    """``uint8 (N, S, S, 3) -> float32 (N, F)`` through one ONNX Runtime session.

    Executor side: imports onnxruntime and numpy only. ``intra_op_threads`` is the number of threads
    of one ``run`` (1 when each Spark task slot has one core); inter-op parallelism is off because the
    graph is a single chain. Spinning threads are disabled by default so an idle session does not
    burn the core the image decoding of the same task needs.
    """

    def __init__(self, model_bytes: bytes, intra_op_threads: int = 1, allow_spinning: bool = False) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(int(intra_op_threads), 0)  # 0 = onnxruntime's default
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        self._session = ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
        (model_input,) = self._session.get_inputs()
        (model_output,) = self._session.get_outputs()
        self.input_name: str = model_input.name
        self.output_name: str = model_output.name
        self.image_shape: tuple[int, ...] = tuple(model_input.shape[1:])
        width = model_output.shape[-1]
        self.feature_dim: int | None = width if isinstance(width, int) else None
        # InferenceSession.run is thread-safe, but one run already uses the threads it was given.
        self._lock = threading.Lock()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if images.dtype != np.uint8:
            raise TypeError(f"expected uint8 images, got {images.dtype}")
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"expected images of shape (N, {', '.join(map(str, self.image_shape))}), got {images.shape}")
        if len(images) == 0:
            return np.empty((0, self.feature_dim or 0), dtype=np.float32)
        with self._lock:
            (out,) = self._session.run([self.output_name], {self.input_name: np.ascontiguousarray(images)})
        return out


def onnx_inference(model_bytes: bytes, intra_op_threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """The executor's inference function for a serialized model from :func:`keras_to_onnx`.

    Same contract as ``fruitfeat.featurize.model.compile_inference`` (uint8 batch -> float32 features), so it
    can replace it in ``featurize_batch`` without other changes.
    """
    return OnnxInference(model_bytes, intra_op_threads)


__all__ = ["keras_to_onnx", "OnnxInference", "onnx_inference", "INPUT_NAME", "OUTPUT_NAME", "DEFAULT_OPSET"]
