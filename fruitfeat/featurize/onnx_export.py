"""MobileNetV2 as an ONNX model, run with ONNX Runtime instead of TensorFlow on the executors.

A worker then imports onnxruntime (~0.1 s, ~60 MB) instead of TensorFlow (seconds, ~1 GB), and runs
faster per image on CPU. The driver converts once (:func:`keras_to_onnx`); the graph takes the decoded
``uint8`` NHWC images and does MobileNetV2's preprocessing itself.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

INPUT_NAME = "images"
OUTPUT_NAME = "features"
BATCH_DIM = "batch"
# tf2onnx 1.17 knows opsets up to 18; 17 runs on every onnxruntime >= 1.13.
DEFAULT_OPSET = 17


def keras_to_onnx(model: Any, image_size: int, opset: int = DEFAULT_OPSET) -> bytes:
    """Serialized ONNX model of ``uint8 images (N, S, S, 3) -> float32 features (N, 1280)`` (driver side).

    The preprocessing traced into the graph is the TensorFlow path's own function, so both runtimes see
    the same network input.
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
    """``uint8 (N, S, S, 3) -> float32 (N, F)`` through one ONNX Runtime session (onnxruntime and numpy only).

    No inter-op threads: the graph is a single chain. No spinning, so an idle session does not burn the
    core the same task's image decoding needs.
    """

    def __init__(self, model_bytes: bytes, intra_op_threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(int(intra_op_threads), 0)  # 0 = onnxruntime's default
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
        (model_input,) = self._session.get_inputs()
        (model_output,) = self._session.get_outputs()
        self.input_name: str = model_input.name
        self.output_name: str = model_output.name
        width = model_output.shape[-1]
        self.feature_dim: int | None = width if isinstance(width, int) else None
        # InferenceSession.run is thread-safe, but one run already uses the threads it was given.
        self._lock = threading.Lock()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if len(images) == 0:
            return np.empty((0, self.feature_dim or 0), dtype=np.float32)
        with self._lock:
            (out,) = self._session.run([self.output_name], {self.input_name: np.ascontiguousarray(images)})
        return out
