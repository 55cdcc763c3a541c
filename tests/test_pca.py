"""fruitfeat.reduce.pca: the covariance fit as a Spark ML PCAModel, against numpy's SVD and Spark ML's own PCA."""

import numpy as np
import pytest
from chispa import assert_approx_df_equality
from pyspark.ml.feature import PCAModel

from fruitfeat.reduce.pca import PCAInputError, fit_pca, project_features, with_pca
from fruitfeat.reduce.pca_selection import VarianceTargetError

from .feature_frames import exploded_features
from .pca_models import spark_pca


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(3)
    latent = rng.normal(size=(40, 3)) * [5.0, 2.0, 1.0]
    return (latent @ rng.normal(size=(3, 8)) + 0.05 * rng.normal(size=(40, 8)) + 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def frame(spark, data):
    rows = [(f"img{i:02d}", "Kiwi", [float(v) for v in row]) for i, row in enumerate(data)]
    return spark.createDataFrame(rows, "path string, label string, features array<float>")


def numpy_pca(data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Components from the SVD of the centred data, signs fixed by the largest entry."""
    x = data.astype(np.float64)
    _, singular, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    components = vt[:k].T
    signs = np.sign(components[np.abs(components).argmax(axis=0), range(k)])
    variance = singular**2 / (singular**2).sum()
    return components * signs, variance[:k]


def projected_frame(spark, data: np.ndarray, components: np.ndarray):
    """Spark ML's convention: the raw (uncentred) vectors times the components."""
    rows = data.astype(np.float64) @ components
    return spark.createDataFrame(
        [(f"img{i:02d}", "Kiwi", [float(v) for v in row]) for i, row in enumerate(rows)],
        "path string, label string, features array<float>",
    )


def test_pca_matches_numpy_svd(spark, frame, data):
    k = 3
    fitted = fit_pca(frame, k)
    components, variance = numpy_pca(data, k)
    assert fitted.k == k and fitted.variance_target is None

    ours = fitted.model.pc.toArray()
    signs = np.sign(ours[np.abs(components).argmax(axis=0), range(k)])
    np.testing.assert_allclose(ours * signs, components, atol=1e-6)
    np.testing.assert_allclose(fitted.explained_variance, variance, rtol=1e-6)

    actual = frame.transform(with_pca(fitted.model))
    assert actual.columns == ["path", "label", "features"] and dict(actual.dtypes)["features"] == "array<float>"
    assert_approx_df_equality(
        exploded_features(actual, 1.0),
        exploded_features(projected_frame(spark, data, components * signs), 1.0),
        precision=1e-3,
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_the_fit_agrees_with_spark_mls_pca(spark, frame, data):
    """Spark ML's PCA is the oracle here only: fruitfeat fits the covariance itself."""
    fitted = fit_pca(frame, 3)
    oracle = spark_pca(frame, 3)
    np.testing.assert_allclose(fitted.explained_variance, oracle.explainedVariance.toArray(), rtol=1e-6)
    signs = np.sign(np.sum(oracle.pc.toArray() * fitted.model.pc.toArray(), axis=0))
    np.testing.assert_allclose(fitted.model.pc.toArray(), oracle.pc.toArray() * signs, atol=1e-6)


def test_a_variance_target_chooses_k_from_the_whole_spectrum(spark, frame, data):
    _, variance = numpy_pca(data, 8)
    cumulative = np.cumsum(variance)
    target = float(cumulative[1] + 1e-4)  # just over two components' share: three are needed
    fitted = fit_pca(frame, target)
    assert (fitted.k, fitted.variance_target) == (3, target)
    np.testing.assert_allclose(fitted.spectrum, variance, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(fitted.explained_variance, variance[:3], rtol=1e-6)
    with pytest.raises(PCAInputError, match="the sample covariance needs at least 2 rows"):
        fit_pca(frame.limit(1), 0.5)  # one row: no variance to share out
    with pytest.raises(VarianceTargetError, match=r"must be in \(0, 1\]"):
        fit_pca(frame, 1.5)


def test_k_is_checked_against_rows_and_dimension(spark, frame):
    with pytest.raises(PCAInputError, match="larger than the feature dimension 8"):
        fit_pca(frame, 9)
    with pytest.raises(PCAInputError, match="larger than the number of featurized images \\(5\\)"):
        fit_pca(frame.limit(5), 6)
    with pytest.raises(PCAInputError, match="no featurized rows"):
        fit_pca(frame.limit(0), 2)


def test_covariance_fit_gives_the_whole_spectrum_and_a_loadable_model(spark, frame, data, tmp_path):
    fitted = fit_pca(frame, 2)
    _, variance = numpy_pca(data, 8)
    np.testing.assert_allclose(fitted.spectrum, variance, rtol=1e-6, atol=1e-12)
    fitted.model.write().save(str(tmp_path / "pca"))
    loaded = PCAModel.load(str(tmp_path / "pca"))
    assert loaded.getK() == 2
    np.testing.assert_array_equal(loaded.pc.toArray(), fitted.model.pc.toArray())
    np.testing.assert_array_equal(loaded.explainedVariance.toArray(), fitted.model.explainedVariance.toArray())
    # The loaded model projects exactly as the fitted one.
    assert_approx_df_equality(
        exploded_features(project_features(frame, loaded), 1.0),
        exploded_features(project_features(frame, fitted.model), 1.0),
        precision=1e-9, ignore_row_order=True, ignore_nullable=True,
    )  # fmt: skip


def test_packed_rows_fit_and_project_like_arrays(spark, frame, data):
    """The job's staging form (one float32 binary value per row) gives the same model and projection."""
    from fruitfeat.featurize.packed import pack_rows

    packed = spark.createDataFrame(
        [(f"img{i:02d}", "Kiwi", blob) for i, blob in enumerate(pack_rows(list(data)))],
        "path string, label string, features binary",
    )
    from_arrays, from_packed = fit_pca(frame, 3), fit_pca(packed, 3)
    np.testing.assert_allclose(from_packed.model.pc.toArray(), from_arrays.model.pc.toArray(), atol=1e-12)
    np.testing.assert_allclose(from_packed.explained_variance, from_arrays.explained_variance, rtol=1e-12)
    projected = packed.transform(with_pca(from_packed.model))
    assert projected.columns == ["path", "label", "features"] and dict(projected.dtypes)["features"] == "array<float>"
    assert_approx_df_equality(
        exploded_features(projected, 1.0),
        exploded_features(frame.transform(with_pca(from_arrays.model)), 1.0),
        precision=1e-4,
        ignore_row_order=True,
        ignore_nullable=True,
    )
