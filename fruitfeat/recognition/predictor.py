"""A run's recognition chain as plain numpy (PCA projection, classifier, labels) in one ``.npz``.

Why: ``fruitfeat predict`` must not start a SparkSession. The arithmetic is Spark ML's, so the
probabilities are Spark's: the uncentred projection ``z = x @ pc`` rounded to float32 as the run stores
it; for the MLP, Spark's ``StandardScalerModel``; dense layers ``a @ W + b`` with sigmoid between them
and softmax at the end (multinomial logistic regression is the one-layer case).
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
from fruitfeat.io.uris import normalize_location

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


def forward(layers: Sequence[Layer], x: np.ndarray) -> np.ndarray:
    """Sigmoid hidden layers, softmax output: Spark's MLP (and, with one layer, multinomial LR)."""
    activation = np.asarray(x, dtype=np.float64)
    for weights, bias in layers[:-1]:
        activation = 1.0 / (1.0 + np.exp(-(activation @ weights + bias)))
    weights, bias = layers[-1]
    logits = activation @ weights + bias
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


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
        if self.scaler_mean is not None:
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


def export_predictor(
    trained: TrainedClassifier,
    pca_model: PCAModel,
    path: str | Path,
    *,
    image_size: int,
    weights: dict[str, Any],
    decode: dict[str, Any] | None = None,
    spark: SparkSession | None = None,
) -> dict[str, Any]:
    """Write ``predictor.npz`` (a local path, or with ``spark`` any Hadoop URI); returns its metadata.

    ``weights`` is the manifest's section, so ``fruitfeat predict`` can rebuild the very MobileNetV2.
    No pickles: the metadata is a JSON string array.
    """
    components = pca_model.pc.toArray()
    model = trained.model
    if trained.candidate.family == "logistic_regression":
        layers = [(model.coefficientMatrix.toArray().T, model.interceptVector.toArray())]
    else:
        layers = unpack_mlp_weights(model.getLayers(), model.weights.toArray())
    arrays = {"pca_components": components}
    for i, (w, b) in enumerate(layers):
        arrays[f"W{i}"], arrays[f"b{i}"] = w, b
    if trained.scaler is not None:
        std = trained.scaler.std.toArray()
        arrays["scaler_mean"] = trained.scaler.mean.toArray()
        arrays["scaler_scale"] = np.divide(1.0, std, out=np.zeros_like(std), where=std != 0.0)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "labels": list(trained.labels),
        "image_size": int(image_size),
        "weights": dict(weights),
        "decode": dict(decode or {}),
        "feature_dim": int(components.shape[0]),
        "k": int(components.shape[1]),
        "classifier": trained.candidate.model_dump(mode="json") | {"name": trained.candidate.name},
        "layers": len(layers),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    # Imported here: ``fruitfeat predict`` loads this module and must not load Spark.
    from fruitfeat.io import storage

    storage.write_bytes(spark, normalize_location(str(path)), buffer.getvalue())
    return meta


def load_predictor(path: str | Path) -> Predictor:
    """Read a ``predictor.npz`` from local disk (a ``file://`` URI is accepted)."""
    target = Path(str(path).removeprefix("file://"))
    try:
        archive = np.load(target, allow_pickle=False)
    except FileNotFoundError:
        raise PredictorError(f"{target} does not exist: the run has no exported predictor") from None
    except (OSError, ValueError) as exc:
        raise PredictorError(f"not a predictor file ({exc})") from None
    with archive:
        if "meta" not in archive.files:
            raise PredictorError("not a fruitfeat predictor file (no metadata)")
        meta = json.loads(str(archive["meta"]))
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise PredictorError(f"unsupported predictor format {meta.get('format')} v{meta.get('format_version')}")
        scaled = "scaler_mean" in archive.files
        return Predictor(
            labels=tuple(meta["labels"]),
            image_size=int(meta["image_size"]),
            weights=dict(meta["weights"]),
            components=archive["pca_components"],
            layers=tuple((archive[f"W{i}"], archive[f"b{i}"]) for i in range(int(meta["layers"]))),
            scaler_mean=archive["scaler_mean"] if scaled else None,
            scaler_scale=archive["scaler_scale"] if scaled else None,
            meta=meta,
        )
