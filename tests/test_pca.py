import numpy as np
import pytest
from chispa import assert_approx_df_equality

from fruitfeat.reduce.pca import PCAInputError, fit_pca, project_features

from .feature_frames import exploded_features


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


@pytest.mark.parametrize("method", ["covariance", "spark_ml"])
def test_pca_matches_numpy_svd(spark, frame, data, method):
    k = 3
    fitted = fit_pca(frame, k, method=method)
    model = fitted.model
    components, variance = numpy_pca(data, k)

    spark_components = model.pc.toArray()
    signs = np.sign(spark_components[np.abs(components).argmax(axis=0), range(k)])
    np.testing.assert_allclose(spark_components * signs, components, atol=1e-6)
    np.testing.assert_allclose(fitted.explained_variance, variance, rtol=1e-6)

    # Spark ML projects the raw (uncentred) vectors onto the components.
    projected = data.astype(np.float64) @ (components * signs)
    expected = spark.createDataFrame(
        [(f"img{i:02d}", "Kiwi", [float(v) for v in row]) for i, row in enumerate(projected)],
        "path string, label string, features array<float>",
    )
    actual = frame.transform(lambda df: project_features(df, model))
    assert actual.columns == ["path", "label", "features"]
    assert_approx_df_equality(
        exploded_features(actual, 1.0),
        exploded_features(expected, 1.0),
        precision=1e-3,
        ignore_row_order=True,
        ignore_nullable=True,
    )


@pytest.mark.parametrize("method", ["covariance", "spark_ml"])
def test_packed_features_fit_and_project_like_arrays(spark, frame, data, method):
    """The job stages packed features: fit and projection must not depend on the encoding."""
    from fruitfeat.featurize.packed_features import pack_rows

    packed = spark.createDataFrame(
        [(f"img{i:02d}", "Kiwi", blob) for i, blob in enumerate(pack_rows(list(data)))] + [("bad", "Kiwi", None)],
        "path string, label string, features binary",
    )
    fitted = fit_pca(packed.where("features is not null"), 3, method=method)
    reference = fit_pca(frame, 3, method=method)
    np.testing.assert_allclose(fitted.explained_variance, reference.explained_variance, rtol=1e-9)
    np.testing.assert_allclose(np.abs(fitted.model.pc.toArray()), np.abs(reference.model.pc.toArray()), atol=1e-9)

    # numpy projects packed rows (a missing vector stays missing); Spark ML projects the arrays.
    ours = packed.transform(lambda df: project_features(df, reference.model))
    assert ours.columns == ["path", "label", "features"] and dict(ours.dtypes)["features"] == "array<float>"
    assert ours.where("path = 'bad'").first().features is None
    assert_approx_df_equality(
        exploded_features(ours.where("features is not null"), 1.0),
        exploded_features(frame.transform(lambda df: project_features(df, reference.model)), 1.0),
        precision=1e-6,
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_k_is_checked_against_rows_and_dimension(spark, frame):
    with pytest.raises(PCAInputError, match="larger than the feature dimension 8"):
        fit_pca(frame, 9)
    with pytest.raises(PCAInputError, match="larger than the number of featurized images \\(5\\)"):
        fit_pca(frame.limit(5), 6)
    with pytest.raises(PCAInputError, match="no featurized rows"):
        fit_pca(frame.limit(0), 2)


def test_covariance_fit_gives_the_whole_spectrum_and_a_loadable_model(spark, frame, data, tmp_path):
    from pyspark.ml.feature import PCAModel

    fitted = fit_pca(frame, 2)
    _, variance = numpy_pca(data, 8)
    np.testing.assert_allclose(fitted.spectrum, variance, rtol=1e-6, atol=1e-12)
    fitted.model.write().save(str(tmp_path / "pca"))
    loaded = PCAModel.load(str(tmp_path / "pca"))
    assert loaded.getK() == 2
    np.testing.assert_array_equal(loaded.pc.toArray(), fitted.model.pc.toArray())
