"""Featurization: image bytes -> 1280-d MobileNetV2 features, inside an iterator Arrow pandas UDF.

The iterator form lets each task fetch the broadcast model once and stream Arrow batches through
it; images that cannot be decoded come out as rows with a reason instead of failing the task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from fruitfeat.featurize.decode import DecodeOptions, ImageDecodeError, decode_image
from fruitfeat.featurize.model import WeightsPayload, inference_from_payload
from fruitfeat.featurize.packed import pack_rows


def _result_type(features: T.DataType) -> T.StructType:
    return T.StructType(
        [
            T.StructField("features", features),
            T.StructField("error_reason", T.StringType()),
            T.StructField("error_message", T.StringType()),
        ]
    )


RESULT_TYPE = _result_type(T.ArrayType(T.FloatType(), containsNull=False))
#: ``features`` as one float32 binary value per row (``fruitfeat.featurize.packed``): the feature store's form.
PACKED_RESULT_TYPE = _result_type(T.BinaryType())


def featurize_batch(
    contents: pd.Series,
    infer: Callable[[np.ndarray], np.ndarray],
    image_size: int,
    batch_size: int,
    decode: DecodeOptions = DecodeOptions(),
    packed: bool = False,
) -> pd.DataFrame:
    """One Arrow batch: decode every image, run the good ones through the network in chunks."""
    n = len(contents)
    features: list[np.ndarray | None] = [None] * n
    reasons: list[str | None] = [None] * n
    messages: list[str | None] = [None] * n
    decoded: list[np.ndarray] = []
    positions: list[int] = []
    for i, data in enumerate(contents):
        try:
            decoded.append(decode_image(data, image_size, decode))
            positions.append(i)
        except ImageDecodeError as exc:
            reasons[i], messages[i] = exc.reason, exc.message
        except Exception as exc:  # one bad image must never fail the task
            reasons[i], messages[i] = "decode_failed", f"{type(exc).__name__}: {exc}"
    for start in range(0, len(decoded), batch_size):
        out = infer(np.stack(decoded[start : start + batch_size]))
        for j, row in enumerate(out):
            features[positions[start + j]] = row
    if packed:
        features = pack_rows(features)
    return pd.DataFrame({"features": features, "error_reason": reasons, "error_message": messages})


def make_featurize_udf(
    weights: Broadcast, batch_size: int, intra_op_threads: int, decode: DecodeOptions = DecodeOptions(), packed: bool = False
):
    """The pandas UDF ``content -> struct<features, error_reason, error_message>``."""

    def featurize(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        payload: WeightsPayload = weights.value
        infer = inference_from_payload(payload, intra_op_threads)  # built once per worker process
        for contents in batches:
            yield featurize_batch(contents, infer, payload.image_size, batch_size, decode, packed)

    return F.pandas_udf(featurize, PACKED_RESULT_TYPE if packed else RESULT_TYPE)


def featurize_images(
    images: DataFrame,
    weights: Broadcast,
    batch_size: int = 2,
    intra_op_threads: int = 1,
    decode: DecodeOptions = DecodeOptions(),
    packed: bool = False,
) -> DataFrame:
    """``path, label, split, content`` -> ``path, label, split, size, features, error_reason, error_message``.

    ``features`` is null exactly when ``error_reason`` says why the image was not featurized;
    ``packed`` makes it one float32 binary value per row (``fruitfeat.featurize.packed``), as the feature store keeps it.
    Other columns of ``images`` (the listing's length and modification time) pass through before ``size``.
    """
    featurize = make_featurize_udf(weights, batch_size, intra_op_threads, decode, packed)
    kept = [c for c in images.columns if c != "content"]
    return images.select(
        *kept, F.length("content").alias("size"), featurize("content").alias("_result"),
    ).select(*kept, "size", "_result.*")


#: Rows per Arrow batch sent to the pandas UDF: a session setting, read when the featurize plan runs.
ARROW_BATCH_ROWS_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"


def arrow_batch_rows(max_rows: int, max_bytes: int, largest_file_bytes: int) -> int:
    """Rows per Arrow batch so that no batch carries more than ``max_bytes`` of file content.

    Spark 3.5 bounds Arrow batches in rows only; the largest file that will be read sets the row cap,
    so 100x100 thumbnails keep ``max_rows`` while 5 MB photos get a few rows and a 50 MB file one.
    """
    return max(1, min(max_rows, max_bytes // max(largest_file_bytes, 1)))


def featurized_rows(df: DataFrame) -> DataFrame:
    return df.where(F.col("error_reason").isNull()).select("path", "label", "split", "features")


def quarantined_rows(df: DataFrame) -> DataFrame:
    return df.where(F.col("error_reason").isNotNull()).select(
        "path", "label", "split", F.col("error_reason").alias("reason"), F.col("error_message").alias("message"), "size"
    )
