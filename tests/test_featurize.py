"""The featurizing UDF: every image's row holds that image's features, whatever batch or partition it ran in."""

import numpy as np
import pandas as pd
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from fruitfeat.featurize.decode import decode_image
from fruitfeat.featurize.model import build_backbone, deserialize_weights
from fruitfeat.featurize.udf import (
    arrow_batch_rows,
    featurize_batch,
    featurize_images,
    featurized_rows,
    quarantined_rows,
)
from fruitfeat.io.listing import list_images

from .conftest import TEST_IMAGE_SIZE
from .feature_frames import exploded_features, features_frame

COLUMNS = ["path", "label", "split", "size", "features", "error_reason", "error_message"]


def mean_colour(images: np.ndarray) -> np.ndarray:
    """A stand-in network: enough to check which image's result lands in which row."""
    return images.reshape(len(images), -1, 3).mean(axis=1).astype(np.float32)


def keras_features(payload, images: np.ndarray) -> np.ndarray:
    """The reference: Keras's own MobileNetV2 with the payload's weights, one image at a time."""
    import keras

    model = build_backbone(payload.image_size)
    model.set_weights(deserialize_weights(payload.blob))
    preprocess = keras.applications.mobilenet_v2.preprocess_input
    return np.concatenate([model(preprocess(image[None].astype("float32")), training=False).numpy() for image in images])


def test_featurize_batch_keeps_rows_aligned_across_bad_images_and_chunks(sample_dataset):
    good = [p.read_bytes() for p in sample_dataset.files[:5]]
    contents = pd.Series([good[0], b"junk", good[1], b"", good[2], good[3], good[4]])
    calls = []

    def network(images):
        calls.append(len(images))
        return mean_colour(images)

    out = featurize_batch(contents, network, TEST_IMAGE_SIZE, batch_size=2)
    assert list(out.columns) == ["features", "error_reason", "error_message"]
    assert out["error_reason"].tolist() == [None, "not_an_image", None, "empty_file", None, None, None]
    assert calls == [2, 2, 1]  # the 5 decodable images, in chunks of batch_size
    for row, data in zip([0, 2, 4, 5, 6], good):
        expected = mean_colour(decode_image(data, TEST_IMAGE_SIZE)[None])[0]
        np.testing.assert_array_equal(out["features"][row], expected)
    assert out["features"][1] is None and out["features"][3] is None
    assert out["error_message"][0] is None and out["error_message"][1] and out["error_message"][3]


def test_featurize_images_equals_keras_applied_to_each_image(spark, sample_dataset, random_payload, broadcast_payload):
    images = list_images(spark, f"file://{sample_dataset.root}", ["jpg"]).where(F.col("label") == "Lime")
    # batch_size 4 over 6 images: full and partial inference batches, compared with one image at a time.
    featurized = featurize_images(images, broadcast_payload, batch_size=4).cache()
    assert featurized.columns == COLUMNS
    rows = featurized.collect()
    assert len(rows) == 6 and all(r.error_reason is None and r.error_message is None for r in rows)

    local = {r.path: bytes(r.content) for r in images.collect()}
    assert {r.path: r.size for r in rows} == {p: len(data) for p, data in local.items()}
    paths = sorted(local)
    direct = keras_features(random_payload, np.stack([decode_image(local[p], TEST_IMAGE_SIZE) for p in paths]))
    # Random weights give features of ~1e-11 (no trained batch-norm statistics): compare relatively.
    scale = float(np.abs(direct).max())
    assert scale > 0 and len({row.tobytes() for row in direct}) == 6
    assert_approx_df_equality(
        exploded_features(featurized.select("path", "features"), scale),
        exploded_features(features_frame(spark, paths, direct), scale),
        precision=1e-4,
        ignore_row_order=True,
        ignore_nullable=True,
    )
    featurized.unpersist()


def test_a_rows_features_do_not_depend_on_its_batch_or_partition(spark, sample_dataset, broadcast_payload):
    """One image per inference call in 6 partitions against 16 per call in one: the same float32 values."""
    images = list_images(spark, f"file://{sample_dataset.root}", ["jpg"]).where(F.col("split") == "Test")
    alone = featurize_images(images.repartition(6), broadcast_payload, batch_size=1).select("path", "features")
    together = featurize_images(images.coalesce(1), broadcast_payload, batch_size=16).select("path", "features")
    assert alone.count() == 6
    scale = max(abs(v) for r in together.collect() for v in r.features)
    assert_approx_df_equality(
        exploded_features(alone, scale), exploded_features(together, scale),
        precision=1e-5, ignore_row_order=True, ignore_nullable=True,
    )  # fmt: skip


def test_bad_images_are_quarantined_not_fatal(spark, sample_dataset, broadcast_payload):
    good = sample_dataset.files[0]
    images = spark.createDataFrame(
        [
            (str(good), "Apple Red", "Training", good.read_bytes()),
            ("/x/Training/Kiwi/fake.jpg", "Kiwi", "Training", b"I am text"),
            ("/x/Test/Kiwi/empty.jpg", "Kiwi", "Test", b""),
        ],
        "path string, label string, split string, content binary",
    )
    featurized = featurize_images(images, broadcast_payload).cache()
    good_rows = featurized_rows(featurized).collect()
    assert [(r.path, r.label, r.split, len(r.features)) for r in good_rows] == [(str(good), "Apple Red", "Training", 1280)]
    expected_errors = spark.createDataFrame(
        [
            ("/x/Training/Kiwi/fake.jpg", "Kiwi", "Training", "not_an_image", 9),
            ("/x/Test/Kiwi/empty.jpg", "Kiwi", "Test", "empty_file", 0),
        ],
        "path string, label string, split string, reason string, size int",
    )
    assert_df_equality(
        quarantined_rows(featurized).drop("message"), expected_errors, ignore_nullable=True, ignore_row_order=True
    )
    assert quarantined_rows(featurized).columns == ["path", "label", "split", "reason", "message", "size"]
    featurized.unpersist()


def test_packed_batches_hold_the_same_float32_values(sample_dataset):
    contents = pd.Series([sample_dataset.files[0].read_bytes(), b"junk", sample_dataset.files[1].read_bytes()])
    plain = featurize_batch(contents, mean_colour, TEST_IMAGE_SIZE, batch_size=2)
    packed = featurize_batch(contents, mean_colour, TEST_IMAGE_SIZE, batch_size=2, packed=True)
    assert packed["features"][1] is None and packed["error_reason"].tolist() == plain["error_reason"].tolist()
    for i in (0, 2):
        np.testing.assert_array_equal(np.frombuffer(packed["features"][i], "<f4"), plain["features"][i])


def test_arrow_batches_are_bounded_by_bytes_as_well_as_rows():
    mib = 1024 * 1024
    assert arrow_batch_rows(64, 32 * mib, 5_000) == 64  # thumbnails: the row cap
    assert arrow_batch_rows(64, 32 * mib, 5 * mib) == 6  # phone photos: 6 x 5 MiB <= 32 MiB
    assert arrow_batch_rows(64, 32 * mib, 49 * mib) == 1  # a file over the budget travels alone
    assert arrow_batch_rows(64, 32 * mib, 0) == 64  # nothing readable (all empty or oversized)
