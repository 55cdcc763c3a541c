"""Choosing the number of PCA components from a variance target instead of a fixed ``k``.

Why: "keep 95 % of the variance" means the same thing on the 6-class sample and on Fruits-360's
131 classes, whereas a fixed ``k`` does not. The caller supplies the *full* spectrum of explained
variance ratios (eigenvalue / sum of all eigenvalues, largest first, as Spark ML's
``PCAModel.explainedVariance`` reports them for ``k = min(dim, rows)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fruitfeat.errors import VarianceTargetError

#: Cumulative sums of float ratios that should reach 1.0 may stop at 0.9999999999999998.
TOLERANCE = 1e-9




def cumulative_variance(explained_variance_all: Sequence[float]) -> np.ndarray:
    """Running total of the ratios, after checking they look like an explained-variance spectrum."""
    ratios = np.asarray(explained_variance_all, dtype=np.float64)
    if ratios.ndim != 1 or ratios.size == 0:
        raise VarianceTargetError("the explained variance spectrum is empty")
    if not np.all(np.isfinite(ratios)) or (ratios < 0).any():
        raise VarianceTargetError("explained variance ratios must be finite and non-negative")
    return np.cumsum(ratios)


def choose_k(explained_variance_all: Sequence[float], target: float) -> int:
    """Smallest ``k`` whose cumulative explained variance is at least ``target`` (0 < target <= 1)."""
    if not 0.0 < float(target) <= 1.0:
        raise VarianceTargetError(f"variance target {target!r} must be in (0, 1], e.g. 0.95 for 95 %")
    cumulative = cumulative_variance(explained_variance_all)
    reached = np.flatnonzero(cumulative >= float(target) - TOLERANCE)
    if reached.size == 0:
        raise VarianceTargetError(
            f"the {cumulative.size} components given explain only {cumulative[-1]:.2%} of the variance, "
            f"less than the target {float(target):.2%}: pass the full spectrum (k = min(dimension, rows))"
        )
    return int(reached[0]) + 1


def resolve_k(setting: int | float, explained_variance_all: Sequence[float] | None = None) -> int:
    """``pca.k`` as configured -> a component count: an ``int`` is a count, a ``float`` a variance target.

    ``True``/``False`` are refused (YAML turns ``yes`` into a bool, which Python treats as an int).
    """
    if isinstance(setting, bool):
        raise VarianceTargetError(f"pca.k must be a count or a variance target, got {setting!r}")
    if isinstance(setting, int):
        if setting < 1:
            raise VarianceTargetError(f"pca.k={setting} must be at least 1")
        return setting
    if explained_variance_all is None:
        raise VarianceTargetError("a variance target needs the explained variance spectrum")
    return choose_k(explained_variance_all, setting)


__all__ = ["choose_k", "cumulative_variance", "resolve_k", "VarianceTargetError"]
