"""A run's recognition chain as plain numpy: PCA projection, classifier, label list, in one ``.npz``.

Why: ``fruitfeat predict`` classifies a photo in a couple of seconds with TensorFlow and numpy
only; starting a SparkSession (JVM, Spark ML) would take longer than the whole prediction. The
arithmetic is Spark ML's, step by step, so the numpy probabilities equal Spark's:

1. PCA: Spark ML projects the *raw* (uncentred) vector, ``z = x @ pc``; the pipeline stores ``z``
   as float32, so it is rounded to float32 here too.
2. MLP only: Spark ML's ``StandardScalerModel``: ``(z - mean) * (1 / std)``, 0 where ``std == 0``.
3. Dense layers ``h = a @ W + b``: sigmoid between layers, softmax at the end (Spark's
   ``MultilayerPerceptron`` topology). Multinomial logistic regression is the one-layer case
   (``W = coefficientMatrix.T``, ``b = interceptVector``).

This module imports numpy only; the export side reads attributes of Spark ML models handed to it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fruitfeat.errors import PredictorError

if TYPE_CHECKING:
    from pyspark.ml.feature import PCAModel
    from pyspark.sql import SparkSession

    from fruitfeat.recognition.classifier import TrainedClassifier

FORMAT = "fruitfeat-predictor"
FORMAT_VERSION = 1
PREDICTOR_FILE = "predictor.npz"

Layer = tuple[np.ndarray, np.ndarray]  # W (n_in, n_out), b (n_out,)




def unpack_mlp_weights(layer_sizes: Sequence[int], flat: np.ndarray) -> list[Layer]:
    """Spark's flat MLP ``weights`` -> per-layer ``(W, b)`` with ``a @ W + b`` semantics.

    Spark's ``AffineLayerModel`` reads each layer as a column-major ``n_out x n_in`` matrix followed
    by ``n_out`` biases; a column-major ``n_out x n_in`` block is the row-major ``n_in x n_out``
    matrix, i.e. already the transpose numpy wants.
    """
    flat = np.asarray(flat, dtype=np.float64)
    sizes = [int(n) for n in layer_sizes]
    expected = sum(n_in * n_out + n_out for n_in, n_out in zip(sizes, sizes[1:]))
    if flat.ndim != 1 or flat.size != expected:
        raise PredictorError(f"MLP layers {sizes} need {expected} weights, got {flat.size}")
    layers, offset = [], 0
    for n_in, n_out in zip(sizes, sizes[1:]):
        weights = flat[offset : offset + n_in * n_out].reshape(n_in, n_out)
        offset += n_in * n_out
        layers.append((weights.copy(), flat[offset : offset + n_out].copy()))
        offset += n_out
    return layers


def softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def forward(layers: Sequence[Layer], x: np.ndarray) -> np.ndarray:
    """Sigmoid hidden layers, softmax output: Spark's MLP (and, with one layer, multinomial LR)."""
    activation = np.asarray(x, dtype=np.float64)
    for i, (weights, bias) in enumerate(layers):
        activation = activation @ weights + bias
        if i < len(layers) - 1:
            activation = sigmoid(activation)
    return softmax(activation)


@dataclass(frozen=True)
class Predictor:
    """Everything ``fruitfeat predict`` needs after MobileNetV2: ``x (n, d) -> probabilities (n, classes)``."""

    labels: tuple[str, ...]
    image_size: int
    weights: dict[str, Any]
    components: np.ndarray  #: (d, k) Spark ML ``pc``
    layers: tuple[Layer, ...]
    scaler_mean: np.ndarray | None = None
    scaler_scale: np.ndarray | None = None  #: 1 / std, 0 where std == 0 (as Spark)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_dim(self) -> int:
        return int(self.components.shape[0])

    @property
    def k(self) -> int:
        return int(self.components.shape[1])

    def project(self, x: np.ndarray) -> np.ndarray:
        """Raw features -> the PCA features the run stored (uncentred projection, float32 values)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if x.shape[1] != self.feature_dim:
            raise PredictorError(f"features have {x.shape[1]} values, the PCA expects {self.feature_dim}")
        return (x @ self.components).astype(np.float32).astype(np.float64)

    def predict_projected(self, z: np.ndarray) -> np.ndarray:
        """PCA features (as in the run's ``features/``) -> class probabilities in label order."""
        z = np.atleast_2d(np.asarray(z, dtype=np.float64))
        if self.scaler_mean is not None and self.scaler_scale is not None:
            z = (z - self.scaler_mean) * self.scaler_scale
        return forward(self.layers, z)

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """MobileNetV2 features ``(n, 1280)`` -> class probabilities ``(n, classes)``."""
        return self.predict_projected(self.project(x))

    def top(self, probabilities: np.ndarray, n: int = 3) -> list[list[tuple[str, float]]]:
        """Per row, the ``n`` most probable ``(label, probability)``; ties keep label order."""
        result = []
        for row in np.atleast_2d(probabilities):
            order = np.argsort(-row, kind="stable")[:n]
            result.append([(self.labels[i], float(row[i])) for i in order])
        return result


# ----------------------------------------------------------------------- export


def classifier_layers(trained: TrainedClassifier) -> list[Layer]:
    """The Spark model of ``trained`` as dense layers."""
    model = trained.model
    if trained.candidate.family == "logistic_regression":
        coefficients = model.coefficientMatrix.toArray()  # (classes, k)
        return [(coefficients.T.copy(), model.interceptVector.toArray().copy())]
    return unpack_mlp_weights(model.getLayers(), model.weights.toArray())


def pca_components(pca: PCAModel | np.ndarray) -> np.ndarray:
    """``(d, k)`` components of a Spark ML ``PCAModel`` (``pc``), or an array that already is one."""
    matrix = pca.pc.toArray() if hasattr(pca, "pc") else np.asarray(pca)
    if matrix.ndim != 2:
        raise PredictorError(f"PCA components must be a (d, k) matrix, got shape {matrix.shape}")
    return np.ascontiguousarray(matrix, dtype=np.float64)


def predictor_arrays(trained: TrainedClassifier, pca: PCAModel | np.ndarray) -> dict[str, np.ndarray]:
    """The numeric content of ``predictor.npz``: ``pca_components``, ``W<i>``/``b<i>``, scaler."""
    arrays: dict[str, np.ndarray] = {"pca_components": pca_components(pca)}
    for i, (weights, bias) in enumerate(classifier_layers(trained)):
        arrays[f"W{i}"], arrays[f"b{i}"] = weights, bias
    if trained.scaler is not None:
        std = trained.scaler.std.toArray()
        arrays["scaler_mean"] = trained.scaler.mean.toArray().astype(np.float64)
        arrays["scaler_scale"] = np.where(std != 0.0, 1.0 / np.where(std != 0.0, std, 1.0), 0.0)
    return arrays


def predictor_bytes(
    trained: TrainedClassifier, pca_model: PCAModel | np.ndarray, *, image_size: int, weights: dict[str, Any]
) -> tuple[bytes, dict[str, Any]]:
    """Serialized ``.npz`` (no pickles: the metadata is a JSON string array) and that metadata."""
    arrays = predictor_arrays(trained, pca_model)
    if arrays["pca_components"].shape[1] != trained.input_dim:
        raise PredictorError(
            f"the PCA has {arrays['pca_components'].shape[1]} components, the classifier expects {trained.input_dim}"
        )
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "labels": list(trained.labels),
        "image_size": int(image_size),
        "weights": dict(weights),
        "feature_dim": int(arrays["pca_components"].shape[0]),
        "k": int(arrays["pca_components"].shape[1]),
        "classifier": trained.candidate.model_dump(mode="json") | {"name": trained.candidate.name},
        "layers": sum(1 for key in arrays if key.startswith("W")),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    return buffer.getvalue(), meta


def export_predictor(
    trained: TrainedClassifier,
    pca_model: PCAModel | np.ndarray,
    path: str | Path,
    *,
    image_size: int,
    weights: dict[str, Any],
    spark: SparkSession | None = None,
) -> dict[str, Any]:
    """Write ``predictor.npz`` to ``path``; returns its metadata.

    ``pca_model`` is the run's Spark ML ``PCAModel`` (or its ``(d, k)`` component matrix).

    ``weights`` is the run manifest's ``weights`` section (source, uri, file_sha256, seed), so
    ``fruitfeat predict`` can rebuild the very MobileNetV2 that produced the features. Without
    ``spark`` the path is local; with it, any URI Spark's Hadoop FileSystem can write (S3).
    """
    data, meta = predictor_bytes(trained, pca_model, image_size=image_size, weights=weights)
    if spark is not None:
        from fruitfeat.io import storage

        storage.write_bytes(spark, str(path), data)
    else:
        target = Path(str(path).removeprefix("file://"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return meta


# ------------------------------------------------------------------------- load


def predictor_from_bytes(data: bytes) -> Predictor:
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PredictorError(f"not a predictor file ({exc})") from None
    with archive:
        if "meta" not in archive.files:
            raise PredictorError("not a fruitfeat predictor file (no metadata)")
        meta = json.loads(str(archive["meta"]))
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise PredictorError(f"unsupported predictor format {meta.get('format')} v{meta.get('format_version')}")
        layers = tuple((archive[f"W{i}"], archive[f"b{i}"]) for i in range(int(meta["layers"])))
        scaled = "scaler_mean" in archive.files
        return Predictor(
            labels=tuple(meta["labels"]),
            image_size=int(meta["image_size"]),
            weights=dict(meta["weights"]),
            components=archive["pca_components"],
            layers=layers,
            scaler_mean=archive["scaler_mean"] if scaled else None,
            scaler_scale=archive["scaler_scale"] if scaled else None,
            meta=meta,
        )


def load_predictor(path: str | Path) -> Predictor:
    """Read a ``predictor.npz`` from local disk (a ``file://`` URI is accepted)."""
    target = Path(str(path).removeprefix("file://"))
    try:
        data = target.read_bytes()
    except FileNotFoundError:
        raise PredictorError(f"{target} does not exist: the run has no exported predictor") from None
    return predictor_from_bytes(data)


__all__ = [
    "PREDICTOR_FILE",
    "Predictor",
    "PredictorError",
    "export_predictor",
    "forward",
    "load_predictor",
    "pca_components",
    "predictor_bytes",
    "predictor_from_bytes",
    "unpack_mlp_weights",
]
