from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from pyspark.sql import functions as F

from fruitfeat.recognition.plots import (
    LEGEND_LIMIT,
    MANY_CLASSES,
    add_class_legend,
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


def lowest_hashes(df, per_class: int, seed: int) -> set[str]:
    """The sample worked out in Python: per label, the ``per_class`` paths of lowest xxhash64(path, seed)."""
    by_label = defaultdict(list)
    for r in df.select("label", "path", F.xxhash64("path", F.lit(seed)).alias("h")).collect():
        by_label[r.label].append((r.h, r.path))
    return {path for rows in by_label.values() for _, path in sorted(rows)[:per_class]}


def test_scatter_sample_is_seeded_and_independent_of_partitioning(spark, points):
    def chosen(df, seed: int) -> set[str]:
        return {r.path for r in sample_per_class(df, 10, seed).collect()}

    one = chosen(points.coalesce(1), 1)
    assert one == lowest_hashes(points, 10, 1) and len(one) == 30
    assert chosen(points.repartition(7), 1) == one
    assert chosen(points, 2) == lowest_hashes(points, 10, 2) != one
    counts = {r.label: r["count"] for r in sample_per_class(points, 10, 1).groupBy("label").count().collect()}
    assert counts == {"Kiwi": 10, "Lime": 10, "Banana": 10}


@pytest.mark.parametrize(("n_classes", "legend_fontsize"), [(3, 8.0), (MANY_CLASSES + 1, 5.0), (LEGEND_LIMIT, 5.0)])
def test_scatter_legend_shrinks_with_the_number_of_classes(n_classes, legend_fontsize):
    axes = Figure().subplots()
    for c in range(n_classes):
        axes.scatter([c], [c], label=f"Class {c}")
    add_class_legend(axes, n_classes)
    texts = axes.get_legend().get_texts()
    assert len(texts) == n_classes and {t.get_fontsize() for t in texts} == {legend_fontsize}
    assert not axes.texts


def test_scatter_legend_is_replaced_by_a_note_past_the_limit():
    axes = Figure().subplots()
    for c in range(LEGEND_LIMIT + 1):
        axes.scatter([c], [c], label=f"Class {c}")
    add_class_legend(axes, LEGEND_LIMIT + 1)
    assert axes.get_legend() is None
    assert [t.get_text() for t in axes.texts] == [f"{LEGEND_LIMIT + 1} classes\n(legend omitted)"]


def test_scatter_of_many_classes_samples_every_class(spark, tmp_path):
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
