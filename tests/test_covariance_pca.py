"""The one-pass covariance PCA against Spark ML's PCA on the same small data."""

from __future__ import annotations

import numpy as np
import pytest
from chispa import assert_approx_df_equality
from pyspark.ml.feature import PCA
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import functions as F

from fruitfeat.reduce.covariance_pca import (
    covariance_statistics,
    fit_covariance_pca,
    sign_normalise,
)
from fruitfeat.reduce.pca import fit_pca, project_features

ROWS, DIM, K = 300, 40, 5


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    """Low rank plus noise, with a mean far from zero, like non-negative image features."""
    rng = np.random.default_rng(11)
    latent = rng.normal(size=(ROWS, 8)) * np.array([9.0, 6.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.7])
    x = latent @ rng.normal(size=(8, DIM)) + 0.3 * rng.normal(size=(ROWS, DIM)) + rng.uniform(2, 6, size=DIM)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def frame(spark, data):
    rows = [(i, [float(v) for v in row]) for i, row in enumerate(data)]
    # Several partitions, so that partial statistics are merged.
    return spark.createDataFrame(rows, "id long, features array<float>").repartition(3).cache()


@pytest.fixture(scope="module")
def spark_model(frame):
    vectors = frame.select("id", array_to_vector("features").alias("v"))
    return PCA(k=K, inputCol="v", outputCol="p").fit(vectors)


@pytest.mark.parametrize("combine", ["collect", "tree"])
def test_matches_spark_ml_pca(frame, spark_model, combine):
    result = fit_covariance_pca(frame, K, combine=combine)

    assert result.n == ROWS and result.components.shape == (DIM, K)
    np.testing.assert_allclose(result.explained_variance, spark_model.explainedVariance.toArray(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(result.components, sign_normalise(spark_model.pc.toArray()), rtol=0, atol=1e-6)


def _exploded(df, scales):
    """``id, p0..p{k-1}`` with each component divided by its scale, so chispa's absolute precision is relative."""
    return df.select("id", *[(F.col("features")[j].cast("double") / float(scales[j])).alias(f"p{j}") for j in range(K)])


def test_projection_through_the_wrapped_model_matches_spark_ml(frame, spark_model):
    """fruitfeat.reduce.pca wraps the covariance components in a PCAModel: same projections as Spark ML's fit."""
    fitted = fit_pca(frame, K)
    # Spark's component signs are arbitrary: flip its projections to match the sign-normalised ones.
    signs = np.sign(np.sum(spark_model.pc.toArray() * fitted.model.pc.toArray(), axis=0))
    spark_projected = (
        spark_model.setInputCol("v")
        .setOutputCol("p")
        .transform(frame.select("id", array_to_vector("features").alias("v")))
        .select("id", vector_to_array("p", dtype="float32").alias("features"))
    )
    ours = frame.transform(lambda df: project_features(df, fitted.model))
    assert ours.columns == ["id", "features"]
    assert dict(ours.dtypes)["features"] == "array<float>"
    scales = np.abs(np.stack([r.features for r in ours.collect()])).max(axis=0)
    assert_approx_df_equality(
        _exploded(ours, scales),
        _exploded(spark_projected, scales * signs),
        precision=1e-5,
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_k_larger_than_dimension_is_rejected(frame):
    with pytest.raises(ValueError, match="larger than the feature dimension 40"):
        fit_covariance_pca(frame, DIM + 1)


def test_sign_normalise_makes_largest_entry_positive():
    m = np.array([[0.1, -0.9], [-0.8, 0.3], [0.2, 0.1]])
    np.testing.assert_array_equal(sign_normalise(m), [[-0.1, 0.9], [0.8, -0.3], [-0.2, -0.1]])
    np.testing.assert_array_equal(sign_normalise(-m), sign_normalise(m))


def test_many_small_partitions_never_flood_the_driver(spark, data):
    """One 13 MB partial per input file would exhaust the driver: partitions are coalesced first."""
    rows = [(i, [float(v) for v in row]) for i, row in enumerate(data)]
    scattered = spark.createDataFrame(rows, "id long, features array<float>").repartition(150)
    n, mean, scatter = covariance_statistics(scattered)
    assert n == ROWS
    np.testing.assert_allclose(scatter / (n - 1), np.cov(data.astype(np.float64), rowvar=False), rtol=1e-9, atol=1e-9)
    tree = covariance_statistics(scattered, combine="tree")
    np.testing.assert_allclose(tree[2], scatter, rtol=1e-12)


@pytest.mark.parametrize("chunk_rows", [7, 40])  # smaller than one Arrow batch (16 rows here), and several
def test_blocks_and_shift_keep_digits_when_the_mean_is_large(spark, data, chunk_rows):
    """Rows buffered into blocks across Arrow batches, a mean 10^4 times the spread: same covariance."""
    shifted = data.astype(np.float64) + 1e4
    rows = [(i, [float(v) for v in row]) for i, row in enumerate(shifted)]
    df = spark.createDataFrame(rows, "id long, features array<double>").repartition(2)
    n, mean, scatter = covariance_statistics(df, chunk_rows=chunk_rows)
    assert n == ROWS
    np.testing.assert_allclose(mean, shifted.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scatter / (n - 1), np.cov(shifted, rowvar=False), rtol=1e-7, atol=1e-9)
