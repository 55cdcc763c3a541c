"""Every error the user can act on, with one base so the command line maps them to exit codes in one place.

A ``FruitfeatError`` is reported in one line without a traceback; anything else is a bug and keeps
its traceback. ``exit_code`` is what ``fruitfeat`` returns for it (2: bad configuration or usage,
3: the run was rejected, 1: anything else the user must fix).
"""

from __future__ import annotations

import sys


class FruitfeatError(Exception):
    """A problem with the user's input, configuration or setup, phrased for that user."""

    exit_code = 1
    label = "error"


class ConfigError(FruitfeatError, ValueError):
    """A configuration problem, phrased for the person who wrote the file."""

    exit_code = 2


class RegionError(FruitfeatError, ValueError):
    """A region outside the EU, where the photos (personal data) must not go."""


class InputError(FruitfeatError):
    """The input location is missing, empty or unreadable."""


class S3AUnavailableError(InputError):
    """An s3a:// URI is configured but the S3A classes are not on the driver's classpath."""


class WeightsError(FruitfeatError):
    """The configured weights cannot be obtained or do not match what they claim to be."""


class QualityGateError(FruitfeatError):
    """A quantized model whose features drift too far from the fp32 model's: refused, nothing written."""


class PCAInputError(FruitfeatError, ValueError):
    """PCA cannot be fitted as configured on this data."""


class VarianceTargetError(PCAInputError):
    """A variance target that no number of components reaches."""


class ClassifierInputError(FruitfeatError, ValueError):
    """The features cannot train or evaluate the classifier (too few classes or rows)."""


class PredictorError(FruitfeatError, ValueError):
    """A predictor file that is not one, or of another format version."""


class PredictSetupError(FruitfeatError):
    """``fruitfeat predict`` cannot find or load what it needs (run, weights, predictor)."""


class RunRejectedError(FruitfeatError):
    """Too much of the input was quarantined (or nothing featurized): the run is kept, not published."""

    exit_code = 3
    label = "rejected"


class StoreConflictError(FruitfeatError):
    """Another run committed the feature store (or published) first: this run is neither committed nor published."""


class EmrError(FruitfeatError):
    """An EMR deployment step failed or was refused (region, bucket, missing artefact)."""


def report_error(exc: FruitfeatError) -> int:
    """The one place a user-facing error becomes a message and an exit code."""
    print(f"fruitfeat: {exc.label}: {exc}", file=sys.stderr)
    return exc.exit_code
