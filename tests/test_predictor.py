import numpy as np
import pytest

from fruitfeat.config.candidates import LogisticRegressionCandidate, MLPCandidate
from fruitfeat.recognition.classifier import predict_frame
from fruitfeat.recognition.predictor import (
    export_predictor,
    load_predictor,
    unpack_mlp_weights,
)
from fruitfeat.recognition.training import train_classifier

from .labelled_blobs import FRUITS, SCHEMA, blob_rows
from .pca_models import projected, spark_pca


def test_mlp_weights_unpack_like_sparks_column_major_layers():
    flat = np.arange(2 * 3 + 3 + 3 * 2 + 2, dtype=np.float64)
    (w0, b0), (w1, b1) = unpack_mlp_weights([2, 3, 2], flat)
    assert w0.shape == (2, 3) and b0.tolist() == [6.0, 7.0, 8.0]
    # Spark's first layer is a 3 x 2 column-major matrix W: W[i, j] = flat[i + 3 j]; numpy holds W.T.
    assert all(w0[j, i] == flat[i + 3 * j] for i in range(3) for j in range(2))
    assert w1.shape == (3, 2) and b1.tolist() == [15.0, 16.0]
    with pytest.raises(ValueError, match="need 17 weights, got 16"):
        unpack_mlp_weights([2, 3, 2], flat[:-1])


@pytest.fixture(scope="module")
def overlapping(spark):
    """12-d raw features of 4 overlapping blobs (probabilities well inside (0, 1)), PCA to k = 6."""
    rng = np.random.default_rng(4)
    centres = 0.6 * rng.normal(size=(4, 12)) + 5.0
    raw = spark.createDataFrame(blob_rows(rng, centres, {"Training": 25, "Test": 10}, 1.5), SCHEMA).cache()
    pca = spark_pca(raw, 6)
    return raw, pca, projected(raw, pca).cache()


@pytest.mark.parametrize(
    "candidate",
    # Few MLP iterations keep its probabilities unsaturated: the comparison is about arithmetic, not fit.
    [LogisticRegressionCandidate(reg_param=0.01), MLPCandidate(hidden_layers=(16,), max_iter=20)],
    ids=["lr", "mlp"],
)
def test_numpy_predictor_reproduces_spark_probabilities(overlapping, candidate, tmp_path):
    raw, pca, features = overlapping
    trained = train_classifier(features.where("split = 'Training'"), [candidate], validation_fraction=0.2, seed=5)
    spark_rows = sorted(predict_frame(features, trained).collect(), key=lambda r: r.path)
    raw_by_path = {r.path: r.features for r in raw.collect()}

    weights = {"source": "random", "seed": 0}
    meta = export_predictor(trained, pca, tmp_path / "predictor.npz", image_size=32, weights=weights)
    predictor = load_predictor(tmp_path / "predictor.npz")
    assert predictor.labels == FRUITS and predictor.k == 6 and predictor.feature_dim == 12
    assert meta["classifier"] == candidate.model_dump(mode="json") | {"name": candidate.name}
    assert meta["layers"] == (1 if isinstance(candidate, LogisticRegressionCandidate) else 2)
    assert predictor.weights == weights

    expected = np.array([r.probability for r in spark_rows])
    assert np.mean(expected.max(axis=1) < 0.99) > 0.25  # mostly unsaturated: the comparison means something
    from_projection = predictor.predict_projected(np.array([r.features for r in spark_rows], dtype=np.float32))
    np.testing.assert_allclose(from_projection, expected, rtol=0, atol=1e-6)
    from_raw = predictor.predict_features(np.array([raw_by_path[r.path] for r in spark_rows], dtype=np.float32))
    np.testing.assert_allclose(from_raw, expected, rtol=0, atol=1e-6)
    assert [[label for label, _ in top] for top in predictor.top(from_raw)] == [list(r.top3) for r in spark_rows]
