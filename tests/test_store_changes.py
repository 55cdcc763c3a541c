"""The store's change detection: one join on the path, compared on length and time (chispa)."""

from datetime import datetime

from chispa import assert_df_equality

from fruitfeat.store.changes import file_changes, reusable_rows

T1, T2 = datetime(2026, 1, 1, 8, 0, 0), datetime(2026, 1, 2, 8, 0, 0)
LISTED = "path string, length long, modification_time timestamp"
STORED = "path string, length long, modification_time timestamp, segment string"
CHANGES = "path string, status string, segment string"


def _frames(spark):
    listed = spark.createDataFrame(
        [("same", 10, T1), ("longer", 12, T1), ("touched", 10, T2), ("new", 5, T2), ("kept", 3, T1)], LISTED
    )
    stored = spark.createDataFrame(
        [("same", 10, T1, "s1"), ("longer", 10, T1, "s1"), ("touched", 10, T1, "s2"), ("deleted", 7, T1, "s2"),
         ("kept", 3, T1, "s3")],
        STORED,
    )
    return listed, stored


def test_every_path_is_new_changed_removed_or_unchanged(spark):
    listed, stored = _frames(spark)
    expected = spark.createDataFrame(
        [("same", "unchanged", "s1"), ("longer", "changed", "s1"), ("touched", "changed", "s2"),
         ("new", "new", None), ("deleted", "removed", "s2"), ("kept", "unchanged", "s3")],
        CHANGES,
    )
    assert_df_equality(file_changes(listed, stored), expected, ignore_row_order=True, ignore_nullable=True)


def test_only_unchanged_files_reuse_their_rows(spark):
    listed, stored = _frames(spark)
    expected = spark.createDataFrame([("same", 10, T1, "s1"), ("kept", 3, T1, "s3")], STORED)
    assert_df_equality(reusable_rows(stored, listed), expected, ignore_row_order=True, ignore_nullable=True)


def test_an_empty_store_makes_every_file_new(spark):
    listed, stored = _frames(spark)
    empty = stored.limit(0)
    assert {r.status for r in file_changes(listed, empty).collect()} == {"new"}
    assert file_changes(listed.limit(0), stored).where("status != 'removed'").count() == 0
