"""The store's change detection: anti-joins on (path, length, modification time), compared with chispa."""

from datetime import datetime

from chispa import assert_df_equality

from fruitfeat.store.changes import files_to_featurize, reusable_rows, stale_by_segment, stale_rows

T1, T2 = datetime(2026, 1, 1, 8, 0, 0), datetime(2026, 1, 2, 8, 0, 0)
LISTED = "path string, length long, modification_time timestamp"
STORED = "path string, length long, modification_time timestamp, segment string"


def _frames(spark):
    listed = spark.createDataFrame(
        [("same", 10, T1), ("longer", 12, T1), ("touched", 10, T2), ("new", 5, T2)], LISTED
    )
    stored = spark.createDataFrame(
        [("same", 10, T1, "s1"), ("longer", 10, T1, "s1"), ("touched", 10, T1, "s2"), ("deleted", 7, T1, "s2"),
         ("kept", 3, T1, "s3")],
        STORED,
    )
    return listed.where("path != 'kept'").unionByName(spark.createDataFrame([("kept", 3, T1)], LISTED)), stored


def test_new_and_changed_files_are_featurized(spark):
    listed, stored = _frames(spark)
    expected = spark.createDataFrame([("longer", 12, T1), ("touched", 10, T2), ("new", 5, T2)], LISTED)
    assert_df_equality(files_to_featurize(listed, stored), expected, ignore_row_order=True, ignore_nullable=True)


def test_only_unchanged_files_reuse_their_rows(spark):
    listed, stored = _frames(spark)
    expected = spark.createDataFrame([("same", 10, T1, "s1"), ("kept", 3, T1, "s3")], STORED)
    assert_df_equality(reusable_rows(stored, listed), expected, ignore_row_order=True, ignore_nullable=True)


def test_stale_rows_say_whether_the_file_changed_or_went(spark):
    listed, stored = _frames(spark)
    stale = stale_rows(stored, listed)
    expected = spark.createDataFrame(
        [("longer", "s1", True), ("touched", "s2", True), ("deleted", "s2", False)],
        "path string, segment string, changed boolean",
    )
    assert_df_equality(stale, expected, ignore_row_order=True, ignore_nullable=True)
    by_segment = spark.createDataFrame([("s1", 1, 1), ("s2", 2, 1)], "segment string, stale long, changed long")
    assert_df_equality(stale_by_segment(stale), by_segment, ignore_row_order=True, ignore_nullable=True)


def test_an_unchanged_input_has_nothing_to_do(spark):
    _, stored = _frames(spark)
    listed = stored.drop("segment")
    assert files_to_featurize(listed, stored).count() == 0
    assert stale_rows(stored, listed).count() == 0
    assert reusable_rows(stored, listed).count() == 5
