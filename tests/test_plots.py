from pathlib import Path

import numpy as np
import pytest

from fruitfeat.recognition.plots import (
    plot_confusion_matrix,
    plot_explained_variance,
    plot_pca_scatter,
    row_normalised,
    sample_per_class,
    shown_components,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5_000, f"{path.name} is only {len(data)} bytes"


@pytest.fixture(scope="module")
def points(spark):
    """Unbalanced classes in 4-d: 500 Kiwi, 40 Lime, 250 Banana rows."""
    rng = np.random.default_rng(0)
    rows = []
    for c, (label, n) in enumerate((("Kiwi", 500), ("Lime", 40), ("Banana", 250))):
        for i in range(n):
            x = rng.normal(size=4) + 4 * c
            rows.append((f"{label}/{i}.jpg", label, [float(v) for v in x]))
    return spark.createDataFrame(rows, "path string, label string, features array<float>")


def test_explained_variance_plot(tmp_path):
    spectrum = np.sort(np.random.default_rng(1).gamma(0.4, size=1280))[::-1]
    spectrum /= spectrum.sum()
    assert_png(plot_explained_variance(spectrum.tolist(), 50, tmp_path / "variance.png", target=0.9))
    assert_png(plot_explained_variance([0.6, 0.3, 0.1], 2, tmp_path / "small.png"))
    with pytest.raises(ValueError, match="outside the 3 components"):
        plot_explained_variance([0.6, 0.3, 0.1], 4, tmp_path / "bad.png")


def test_flat_tail_of_the_spectrum_is_not_drawn():
    spectrum = np.r_[np.full(100, 0.01), np.zeros(1180)]
    assert shown_components(spectrum, 20) == 100
    assert shown_components(spectrum, 80) == 160


def test_scatter_samples_at_most_max_points_per_class(points, tmp_path):
    sample = plot_pca_scatter(points, tmp_path / "scatter.png", max_points_per_class=100, seed=3)
    assert_png(sample.path)
    assert sample.sampled_per_class == {"Banana": 100, "Kiwi": 100, "Lime": 40}
    assert sample.total == 240


def test_scatter_sample_is_seeded(spark, points):
    def chosen(seed: int) -> set[str]:
        return {r.path for r in sample_per_class(points, 10, seed).collect()}

    assert chosen(1) == chosen(1) and chosen(1) != chosen(2)
    counts = {r.label: r["count"] for r in sample_per_class(points, 10, 1).groupBy("label").count().collect()}
    assert counts == {"Kiwi": 10, "Lime": 10, "Banana": 10}


def test_scatter_with_many_classes_drops_the_legend(spark, tmp_path):
    rng = np.random.default_rng(2)
    rows = [
        (f"c{c}/{i}", f"Class {c:03d}", [float(v) for v in rng.normal(size=2) + c])
        for c in range(130)
        for i in range(5)
    ]
    df = spark.createDataFrame(rows, "path string, label string, features array<float>")
    sample = plot_pca_scatter(df, tmp_path / "many.png", max_points_per_class=3)
    assert_png(sample.path)
    assert len(sample.sampled_per_class) == 130 and set(sample.sampled_per_class.values()) == {3}


def test_confusion_matrix_plot(tmp_path):
    matrix = [[6, 0, 1], [0, 5, 0], [2, 0, 4]]
    assert_png(plot_confusion_matrix(matrix, ["Apple Red", "Banana", "Lime"], tmp_path / "confusion.png"))
    with pytest.raises(ValueError, match="does not match 2 labels"):
        plot_confusion_matrix(matrix, ["a", "b"], tmp_path / "bad.png")


def test_confusion_matrix_with_131_classes(tmp_path):
    rng = np.random.default_rng(3)
    n = 131
    matrix = np.diag(rng.integers(20, 50, n)) + rng.integers(0, 2, (n, n))
    path = plot_confusion_matrix(matrix.tolist(), [f"Fruit {i}" for i in range(n)], tmp_path / "big.png")
    assert_png(path)


def test_row_normalisation_keeps_empty_rows_at_zero():
    shares = row_normalised(np.array([[2, 2], [0, 0]]))
    np.testing.assert_array_equal(shares, [[0.5, 0.5], [0.0, 0.0]])
