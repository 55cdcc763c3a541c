"""PNG plots of a run: explained variance, a 2-D PCA scatter, the confusion matrix.

Matplotlib's ``Figure`` on Agg, never ``pyplot``: headless, and no global backend change. Fruits-360
has 100+ classes, so legends, annotations and ticks shrink or disappear past :data:`MANY_CLASSES`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

DPI = 120
MANY_CLASSES = 20  # above this: no counts in cells, small ticks, compact or no legend
LEGEND_LIMIT = 60  # above this the scatter has no legend at all


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)  # headless Agg rendering, whatever backend pyplot users chose
    figure.savefig(path, dpi=DPI, format="png", bbox_inches="tight")
    return path


def class_colours(n: int) -> list[tuple[float, float, float, float]]:
    """Distinct colours: tab10/tab20 for few classes, evenly spaced hues beyond."""
    if n <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(n)]
    cmap = matplotlib.colormaps["turbo"]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def shown_components(ratios: np.ndarray, chosen_k: int) -> int:
    """Components worth drawing: up to 99.9 % cumulative variance (or twice ``k``), not a flat tail of 1280."""
    cumulative = np.cumsum(ratios)
    saturated = int(np.searchsorted(cumulative, 0.999 * cumulative[-1])) + 1
    return int(min(ratios.size, max(2 * chosen_k, saturated, 10)))


def plot_explained_variance(
    variance_ratios_all: Sequence[float], chosen_k: int, path: str | Path, target: float | None = None
) -> Path:
    """Cumulative explained variance per component count, with the chosen ``k`` (and target) marked."""
    ratios = np.asarray(variance_ratios_all, dtype=np.float64)
    if not 1 <= chosen_k <= ratios.size:
        raise ValueError(f"chosen k={chosen_k} is outside the {ratios.size} components given")
    total = ratios.size
    ratios = ratios[: shown_components(ratios, chosen_k)]
    cumulative = np.cumsum(ratios)
    ks = np.arange(1, ratios.size + 1)
    figure = Figure(figsize=(7.5, 4.5))
    axes = figure.subplots()
    axes.bar(ks, ratios, width=1.0, color="#b0c4de", label="per component")
    axes.plot(ks, cumulative, color="#1f4e79", linewidth=2, label="cumulative")
    axes.axvline(chosen_k, color="#c0392b", linestyle="--", linewidth=1.2)
    axes.plot([chosen_k], [cumulative[chosen_k - 1]], "o", color="#c0392b")
    near_right = chosen_k > 0.75 * ratios.size
    axes.annotate(
        f"k = {chosen_k}: {cumulative[chosen_k - 1]:.1%}", (chosen_k, cumulative[chosen_k - 1]),
        textcoords="offset points", xytext=(-8 if near_right else 8, -18), color="#c0392b",
        ha="right" if near_right else "left",
    )
    if target is not None:
        axes.axhline(target, color="#7f8c8d", linestyle=":", linewidth=1.2, label=f"target {target:.0%}")
    axes.set_xlim(0.5, ratios.size + 0.5)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("number of components")
    axes.set_ylabel("explained variance")
    shown = f"first {ratios.size} of {total}" if ratios.size < total else f"{total}"
    axes.set_title(f"PCA explained variance ({shown} components)")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right")
    return _save(figure, path)


@dataclass(frozen=True)
class ScatterSample:
    """What the scatter shows: points per class actually collected to the driver."""

    path: Path
    sampled_per_class: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.sampled_per_class.values())


def sample_per_class(df: DataFrame, max_per_class: int, seed: int = 0) -> DataFrame:
    """At most ``max_per_class`` rows of each label: those of lowest ``xxhash64(path, seed)``, on any partitioning."""
    window = Window.partitionBy("label").orderBy(F.xxhash64(F.col("path"), F.lit(seed)))
    return (
        df.withColumn("_plot_rank", F.row_number().over(window))
        .where(F.col("_plot_rank") <= max_per_class)
        .drop("_plot_rank")
    )


def add_class_legend(axes, n_classes: int) -> None:
    """A legend beside few classes, a compact one outside up to :data:`LEGEND_LIMIT`, a note beyond."""
    if n_classes <= MANY_CLASSES:
        axes.legend(loc="best", fontsize=8, markerscale=1.5, frameon=True)
    elif n_classes <= LEGEND_LIMIT:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=5, ncol=math.ceil(n_classes / 30),
                    markerscale=1.2, frameon=False)
    else:
        axes.text(1.01, 1.0, f"{n_classes} classes\n(legend omitted)", transform=axes.transAxes, va="top", fontsize=8)


def plot_pca_scatter(
    features: DataFrame, path: str | Path, max_points_per_class: int = 200, seed: int = 0
) -> ScatterSample:
    """First two PCA features coloured by class, from a per-class sample (never the whole table)."""
    first_two = sample_per_class(features, max_points_per_class, seed).select(
        "label",
        F.col("features")[0].cast("double").alias("x"),
        F.coalesce(F.col("features")[1].cast("double"), F.lit(0.0)).alias("y"),
    )
    rows = first_two.where(F.col("label").isNotNull() & F.col("x").isNotNull()).collect()
    points: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        points.setdefault(row.label, []).append((row.x, row.y))
    labels = sorted(points)
    figure = Figure(figsize=(8.5, 6.5) if len(labels) > MANY_CLASSES else (7.5, 6))
    axes = figure.subplots()
    size = 14 if len(labels) <= MANY_CLASSES else 5
    for label, colour in zip(labels, class_colours(len(labels))):
        xy = np.asarray(points[label])
        axes.scatter(xy[:, 0], xy[:, 1], s=size, color=colour, alpha=0.75, label=label, linewidths=0)
    axes.set_xlabel("PCA feature 1")
    axes.set_ylabel("PCA feature 2")
    axes.set_title(f"PCA features 1-2: {len(rows)} images, at most {max_points_per_class} per class")
    axes.grid(True, alpha=0.3)
    if labels:
        add_class_legend(axes, len(labels))
    return ScatterSample(_save(figure, path), {label: len(points[label]) for label in labels})


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its total (recall per true class); empty rows stay 0."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix, dtype=np.float64), where=totals > 0)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path) -> Path:
    """Counts annotated (up to :data:`MANY_CLASSES` classes), colour = share of the true class."""
    counts = np.asarray(matrix, dtype=np.int64)
    n = len(labels)
    if counts.shape != (n, n):
        raise ValueError(f"a {counts.shape} matrix does not match {n} labels")
    shares = row_normalised(counts)
    side = min(max(5.5, 0.3 * n + 3.0), 26.0)
    figure = Figure(figsize=(side + 1.2, side))
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true class")
    font = 9 if n <= MANY_CLASSES else max(3.0, 8.0 - n / 25.0)
    axes.set_xticks(range(n), labels=list(labels), rotation=90, fontsize=font)
    axes.set_yticks(range(n), labels=list(labels), fontsize=font)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"Confusion matrix ({int(counts.sum())} images, {n} classes)")
    if n <= MANY_CLASSES:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    colour = "white" if shares[i, j] > 0.5 else "#1a1a1a"
                    axes.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=9)
    return _save(figure, path)
