import numpy as np
import pandas as pd
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from fruitfeat.featurize.decode import decode_image
from fruitfeat.featurize.model import inference_from_payload
from fruitfeat.featurize.udf import (
    featurize_batch,
    featurize_images,
    featurized_rows,
    model_build_log,
    quarantined_rows,
)
from fruitfeat.io.listing import list_images

from .conftest import TEST_IMAGE_SIZE
from .feature_frames import exploded_features


def mean_colour(images: np.ndarray) -> np.ndarray:
    """A stand-in network: enough to check which image's result lands in which row."""
    return images.reshape(len(images), -1, 3).mean(axis=1).astype(np.float32)


def test_featurize_batch_keeps_rows_aligned_across_bad_images_and_chunks(sample_dataset):
    good = [p.read_bytes() for p in sample_dataset.files[:5]]
    contents = pd.Series([good[0], b"junk", good[1], b"", good[2], good[3], good[4]])
    out = featurize_batch(contents, mean_colour, TEST_IMAGE_SIZE, batch_size=2)
    assert list(out.columns) == ["features", "error_reason", "error_message"]
    assert out["error_reason"].tolist() == [None, "not_an_image", None, "empty_file", None, None, None]
    for row, data in zip([0, 2, 4, 5, 6], good):
        expected = mean_colour(decode_image(data, TEST_IMAGE_SIZE)[None])[0]
        np.testing.assert_array_equal(out["features"][row], expected)
    assert out["features"][1] is None and out["features"][3] is None


def test_featurize_images_equals_the_model_applied_directly(spark, sample_dataset, random_payload, broadcast_payload):
    images = list_images(spark, f"file://{sample_dataset.root}", ["jpg"]).where(F.col("label") == "Lime")
    builds = model_build_log(spark.sparkContext)
    featurized = featurize_images(images, broadcast_payload, batch_size=3, build_log=builds).cache()

    assert featurized.columns == ["path", "label", "split", "size", "features", "error_reason", "error_message"]
    rows = featurized.collect()
    assert len(rows) == 6 and all(r.error_reason is None and len(r.features) == 1280 for r in rows)
    assert 1 <= len(builds.value) <= 2  # one model per Python worker, never one per batch

    infer, _ = inference_from_payload(random_payload)
    paths = [r.path for r in images.select("path").collect()]
    local = {r.path: bytes(r.content) for r in images.collect()}
    direct = infer(np.stack([decode_image(local[p], TEST_IMAGE_SIZE) for p in paths]))
    scale = float(np.abs(direct).max())
    expected = spark.createDataFrame(
        [(p, [float(v) for v in f]) for p, f in zip(paths, direct)], "path string, features array<float>"
    )
    assert_approx_df_equality(
        exploded_features(featurized, scale),
        exploded_features(expected, scale),
        precision=1e-4,
        ignore_row_order=True,
        ignore_nullable=True,
    )
    featurized.unpersist()


def test_featurization_is_deterministic(spark, sample_dataset, broadcast_payload):
    images = list_images(spark, f"file://{sample_dataset.root}", ["jpg"]).where(F.col("split") == "Test")
    first = featurize_images(images, broadcast_payload).select("path", "features")
    second = featurize_images(images, broadcast_payload).select("path", "features")
    assert_df_equality(first, second, ignore_row_order=True)


def test_bad_images_are_quarantined_not_fatal(spark, sample_dataset, broadcast_payload):
    good = sample_dataset.files[0]
    images = spark.createDataFrame(
        [
            (str(good), "Apple Red", "Training", good.read_bytes()),
            ("/x/Training/Kiwi/fake.jpg", "Kiwi", "Training", b"I am text"),
        ],
        "path string, label string, split string, content binary",
    )
    featurized = featurize_images(images, broadcast_payload).cache()
    assert [r.path for r in featurized_rows(featurized).collect()] == [str(good)]
    expected_errors = spark.createDataFrame(
        [("/x/Training/Kiwi/fake.jpg", "Kiwi", "Training", "not_an_image", 9)],
        "path string, label string, split string, reason string, size int",
    )
    assert_df_equality(
        quarantined_rows(featurized).drop("message"), expected_errors, ignore_nullable=True
    )
    featurized.unpersist()


def test_packed_features_are_the_same_values_as_arrays(spark, sample_dataset, broadcast_payload):
    from fruitfeat.featurize.packed_features import unpack_features

    images = list_images(spark, f"file://{sample_dataset.root}", ["jpg"]).where(F.col("label") == "Lime")
    arrays = featurize_images(images, broadcast_payload, batch_size=4).select("path", "features")
    packed = featurize_images(images, broadcast_payload, batch_size=4, packed=True).select("path", "features")
    assert dict(packed.dtypes)["features"] == "binary"
    assert {len(r.features) for r in packed.collect()} == {1280 * 4}
    # Same network, same batches: the float32 values themselves, not approximately.
    assert_df_equality(unpack_features(packed), arrays, ignore_row_order=True, ignore_nullable=True)
