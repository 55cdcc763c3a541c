"""Accounting: every listed file is featurized or quarantined with a reason, counted in one job."""

from dataclasses import replace

import pytest
from chispa import assert_df_equality

from fruitfeat.io.listing import list_input
from fruitfeat.io.quarantine import ERROR_COLUMNS, ERRORS_SCHEMA, account_for_listing

from .test_images import make_tree

STAGED = (
    "path string, label string, split string, size int, features array<float>, "
    "error_reason string, error_message string"
)


def staged_frame(spark, root, rows):
    return spark.createDataFrame(
        [(f"file:{root}/{p}", p.split("/")[1], p.split("/")[0], size, feats, reason, msg) for p, size, feats, reason, msg in rows],
        STAGED,
    )


def test_a_clean_input_needs_no_anti_join_and_has_an_empty_errors_table(spark, tmp_path):
    make_tree(tmp_path, {"Training/Lime/a.jpg": b"aa", "Test/Lime/b.jpg": b"bbb"})
    listing = list_input(spark, f"file://{tmp_path}", ["jpg"], max_file_bytes=100)
    staged = staged_frame(
        spark, tmp_path, [("Training/Lime/a.jpg", 2, [1.0], None, None), ("Test/Lime/b.jpg", 3, [2.0], None, None)]
    )
    accounting = account_for_listing(staged, listing, max_file_bytes=100)
    assert accounting.counts == {"listed": 2, "featurized": 2, "quarantined": 0}
    assert accounting.reasons == {}
    assert_df_equality(accounting.errors, spark.createDataFrame([], ERRORS_SCHEMA))
    assert accounting.errors.rdd.getNumPartitions() == 0  # no task to write it: one empty file from the JVM
    accounting.errors.write.parquet(str(tmp_path / "errors"))
    written = spark.read.parquet(str(tmp_path / "errors"))
    assert written.count() == 0 and written.columns == accounting.errors.columns == list(ERROR_COLUMNS)
    assert "files" not in listing.__dict__  # the listing's path frame was never built


class _Untouchable:
    """Stands in for a listing's oversized frame that the accounting must not need."""

    def __getattr__(self, name):
        raise AssertionError(f"the oversized files were looked for ({name}) although every listed file was staged")


def test_decode_errors_alone_need_no_scan_for_oversized_files(spark, tmp_path):
    make_tree(tmp_path, {"Training/Lime/a.jpg": b"aa", "Test/Lime/junk.jpg": b"junk"})
    listing = replace(list_input(spark, f"file://{tmp_path}", ["jpg"], max_file_bytes=100), oversized=_Untouchable())
    staged = staged_frame(
        spark,
        tmp_path,
        [("Training/Lime/a.jpg", 2, [1.0], None, None), ("Test/Lime/junk.jpg", 4, None, "not_an_image", "no image")],
    )
    accounting = account_for_listing(staged, listing, max_file_bytes=100)
    assert accounting.counts == {"listed": 2, "featurized": 1, "quarantined": 1}
    assert accounting.reasons == {"not_an_image": 1}
    expected = spark.createDataFrame(
        [(f"file:{tmp_path}/Test/Lime/junk.jpg", "Lime", "Test", "not_an_image", "no image", 4)], ERRORS_SCHEMA
    )
    assert_df_equality(accounting.errors, expected, ignore_nullable=True)


def test_every_kind_of_bad_file_gets_its_reason(spark, tmp_path):
    make_tree(
        tmp_path,
        {
            "Training/Lime/ok.jpg": b"ok",
            "Training/Lime/junk.jpg": b"junk",
            "Training/Lime/empty.jpg": b"",
            "Test/Lime/big.jpg": b"x" * 200,
        },
    )
    listing = list_input(spark, f"file://{tmp_path}", ["jpg"], max_file_bytes=100)
    staged = staged_frame(
        spark,
        tmp_path,
        [
            ("Training/Lime/ok.jpg", 2, [1.0], None, None),
            ("Training/Lime/junk.jpg", 4, None, "not_an_image", "Pillow cannot identify the file as an image"),
        ],
    )
    accounting = account_for_listing(staged, listing, max_file_bytes=100)
    assert accounting.counts == {"listed": 4, "featurized": 1, "quarantined": 3}
    assert accounting.reasons == {"not_an_image": 1, "too_large": 1, "empty_file": 1}
    expected = spark.createDataFrame(
        [
            (f"file:{tmp_path}/Training/Lime/junk.jpg", "Lime", "Training", "not_an_image",
             "Pillow cannot identify the file as an image", 4),
            (f"file:{tmp_path}/Test/Lime/big.jpg", "Lime", "Test", "too_large",
             "200 bytes is over input.max_file_bytes=100", 200),
            (f"file:{tmp_path}/Training/Lime/empty.jpg", "Lime", "Training", "empty_file",
             "zero bytes (Spark's binaryFile skips such files), or removed while the job ran", 0),
        ],
        ERRORS_SCHEMA,
    )
    assert_df_equality(accounting.errors, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_file_counted_twice_is_an_accounting_error(spark, tmp_path):
    make_tree(tmp_path, {"Training/Lime/a.jpg": b"aa"})
    listing = list_input(spark, f"file://{tmp_path}", ["jpg"], max_file_bytes=100)
    twice = staged_frame(spark, tmp_path, [("Training/Lime/a.jpg", 2, [1.0], None, None)] * 2)
    with pytest.raises(RuntimeError, match="accounting error: 2 featurized .* for 1 listed files"):
        account_for_listing(twice, listing, max_file_bytes=100)
