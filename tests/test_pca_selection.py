import numpy as np
import pytest

from fruitfeat.reduce.pca_selection import (
    VarianceTargetError,
    choose_k,
    cumulative_variance,
    resolve_k,
)

from .pca_models import spark_pca


def numpy_choose_k(spectrum: np.ndarray, target: float) -> int:
    return int(np.searchsorted(np.cumsum(spectrum), target - 1e-9)) + 1


@pytest.fixture(scope="module")
def spectrum() -> np.ndarray:
    values = np.random.default_rng(5).gamma(0.5, size=40)
    return np.sort(values / values.sum())[::-1]


@pytest.mark.parametrize("target", [0.01, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0])
def test_choose_k_is_the_first_k_reaching_the_target(spectrum, target):
    k = choose_k(spectrum.tolist(), target)
    cumulative = np.cumsum(spectrum)
    assert k == numpy_choose_k(spectrum, target)
    assert cumulative[k - 1] >= target - 1e-9
    assert k == 1 or cumulative[k - 2] < target


def test_exact_boundaries():
    assert choose_k([0.5, 0.3, 0.2], 0.5) == 1
    assert choose_k([0.5, 0.3, 0.2], 0.8) == 2
    assert choose_k([0.5, 0.3, 0.2], 0.800001) == 3
    # 0.1 + 0.2 + 0.7 sums to 0.9999999999999999 in floating point: a target of 1.0 is still met.
    assert choose_k([0.7, 0.2, 0.1], 1.0) == 3


@pytest.mark.parametrize("target", [0.0, -0.1, 1.01, float("nan")])
def test_target_out_of_range_is_refused(target):
    with pytest.raises(VarianceTargetError, match="must be in \\(0, 1\\]"):
        choose_k([0.6, 0.4], target)


def test_unreachable_target_says_what_the_spectrum_holds():
    with pytest.raises(VarianceTargetError, match="2 components given explain only 70.00% .* target 90.00%"):
        choose_k([0.5, 0.2], 0.9)


@pytest.mark.parametrize("bad", [[], [0.5, -0.1], [float("inf")]])
def test_malformed_spectra_are_refused(bad):
    with pytest.raises(VarianceTargetError):
        cumulative_variance(bad)


def test_resolve_k_count_or_target():
    assert resolve_k(7) == 7
    assert resolve_k(0.8, [0.5, 0.3, 0.2]) == 2
    with pytest.raises(VarianceTargetError, match="needs the explained variance spectrum"):
        resolve_k(0.8)
    with pytest.raises(VarianceTargetError, match="count or a variance target"):
        resolve_k(True)


def test_spark_spectrum_matches_numpy_eigenvalues(spark):
    rng = np.random.default_rng(11)
    data = (rng.normal(size=(60, 4)) * [6.0, 3.0, 1.5, 0.5]) @ rng.normal(size=(4, 8)) + 0.1 * rng.normal(size=(60, 8))
    data = data.astype(np.float32)
    frame = spark.createDataFrame(
        [(f"img{i}", [float(v) for v in row]) for i, row in enumerate(data)], "path string, features array<float>"
    )
    spark_spectrum = spark_pca(frame, k=8).explainedVariance.toArray()

    eigenvalues = np.linalg.eigvalsh(np.cov(data.astype(np.float64), rowvar=False))[::-1]
    numpy_spectrum = eigenvalues / eigenvalues.sum()
    np.testing.assert_allclose(spark_spectrum, numpy_spectrum, rtol=1e-6, atol=1e-12)
    for target in (0.5, 0.9, 0.99, 0.999):
        assert choose_k(spark_spectrum, target) == numpy_choose_k(numpy_spectrum, target)
