"""Accounting: every listed file is featurized or quarantined with a reason, and too much quarantine rejects a run."""

import pytest
from chispa import assert_df_equality

from fruitfeat.featurize.decode import DecodeOptions
from fruitfeat.featurize.udf import featurize_images
from fruitfeat.io.listing import list_input
from fruitfeat.io.quarantine import ERROR_COLUMNS, Accounting, account_for_listing

from .bad_inputs import MAX_FILE_BYTES, MAX_IMAGE_PIXELS, build_mixed_corpus, make_tree
from .feature_frames import ERRORS_SCHEMA, staged_frame

EMPTY_MESSAGE = "zero bytes (Spark's binaryFile skips such files), or removed while the job ran"


def account(spark, staged, listing, max_file_bytes, tmp_path):
    """The accounting, and its errors table as the pipeline writes it, read back."""
    accounting = account_for_listing(staged, listing, max_file_bytes)
    accounting.errors.write.parquet(str(tmp_path / "errors"))
    return accounting, spark.read.parquet(str(tmp_path / "errors"))


def without_errors(accounting):
    return (accounting.listed, accounting.featurized, accounting.reasons)


def test_a_clean_input_has_an_empty_errors_table(spark, tmp_path):
    make_tree(tmp_path / "in", {"Training/Lime/a.jpg": b"aa", "Test/Lime/b.jpg": b"bbb"})
    listing = list_input(spark, f"file://{tmp_path}/in", ["jpg"], max_file_bytes=100)
    staged = staged_frame(
        spark, tmp_path / "in", [("Training/Lime/a.jpg", 2, [1.0], None, None), ("Test/Lime/b.jpg", 3, [2.0], None, None)]
    )
    accounting, errors = account(spark, staged, listing, 100, tmp_path)
    assert_df_equality(errors, spark.createDataFrame([], ERRORS_SCHEMA), ignore_nullable=True)
    assert errors.columns == list(ERROR_COLUMNS)
    assert without_errors(accounting) == (2, 2, {})
    assert accounting.counts == {"listed": 2, "featurized": 2, "quarantined": 0}


def test_every_kind_of_bad_file_gets_its_reason(spark, tmp_path):
    root = tmp_path / "in"
    make_tree(
        root,
        {
            "Training/Lime/ok.jpg": b"ok",
            "Training/Lime/junk.jpg": b"junk",
            "Training/Lime/empty.jpg": b"",
            "Test/Lime/big.jpg": b"x" * 200,
        },
    )
    listing = list_input(spark, f"file://{root}", ["jpg"], max_file_bytes=100)
    staged = staged_frame(
        spark,
        root,
        [
            ("Training/Lime/ok.jpg", 2, [1.0], None, None),
            ("Training/Lime/junk.jpg", 4, None, "not_an_image", "Pillow cannot identify the file as an image"),
        ],
    )
    accounting, errors = account(spark, staged, listing, 100, tmp_path)
    expected = spark.createDataFrame(
        [
            (f"file:{root}/Training/Lime/junk.jpg", "Lime", "Training", "not_an_image",
             "Pillow cannot identify the file as an image", 4),
            (f"file:{root}/Test/Lime/big.jpg", "Lime", "Test", "too_large", "200 bytes is over input.max_file_bytes=100", 200),
            (f"file:{root}/Training/Lime/empty.jpg", "Lime", "Training", "empty_file", EMPTY_MESSAGE, 0),
        ],
        ERRORS_SCHEMA,
    )  # fmt: skip
    assert_df_equality(errors, expected, ignore_row_order=True, ignore_nullable=True)
    assert without_errors(accounting) == (4, 1, {"not_an_image": 1, "too_large": 1, "empty_file": 1})
    assert accounting.counts == {"listed": 4, "featurized": 1, "quarantined": 3}


def test_a_file_removed_after_listing_is_quarantined_as_unread(spark, tmp_path):
    """The listing holds it, the scan never returned it: it cannot just vanish from the counts."""
    root = tmp_path / "in"
    make_tree(root, {"Training/Kiwi/a.jpg": b"aa", "Training/Kiwi/gone.jpg": b"bb"})
    listing = list_input(spark, f"file://{root}", ["jpg"], max_file_bytes=100)
    staged = staged_frame(spark, root, [("Training/Kiwi/a.jpg", 2, [1.0], None, None)])
    accounting, errors = account(spark, staged, listing, 100, tmp_path)
    expected = spark.createDataFrame(
        [(f"file:{root}/Training/Kiwi/gone.jpg", "Kiwi", "Training", "empty_file", EMPTY_MESSAGE, 0)], ERRORS_SCHEMA
    )
    assert_df_equality(errors, expected, ignore_nullable=True)
    assert accounting.counts == {"listed": 2, "featurized": 1, "quarantined": 1}


def test_a_file_counted_twice_is_an_accounting_error(spark, tmp_path):
    make_tree(tmp_path / "in", {"Training/Lime/a.jpg": b"aa"})
    listing = list_input(spark, f"file://{tmp_path}/in", ["jpg"], max_file_bytes=100)
    twice = staged_frame(spark, tmp_path / "in", [("Training/Lime/a.jpg", 2, [1.0], None, None)] * 2)
    with pytest.raises(RuntimeError, match=r"accounting error: 2 featurized and 0 quarantined rows for 1 listed files"):
        account_for_listing(twice, listing, 100)


def test_the_mixed_corpus_through_featurizer_and_accounting(spark, tmp_path, broadcast_payload):
    """Real bytes of every bad kind through the featurizer: each good file a feature row, each bad one its reason."""
    corpus = build_mixed_corpus(tmp_path / "in", good_seeds=1)
    listing = list_input(spark, f"file://{corpus.root}", ["jpg", "jpeg", "png"], max_file_bytes=MAX_FILE_BYTES)
    featurized = featurize_images(listing.images, broadcast_payload, batch_size=4, decode=DecodeOptions(max_pixels=MAX_IMAGE_PIXELS))
    featurized.write.parquet(f"file://{tmp_path}/staged")
    staged = spark.read.parquet(f"file://{tmp_path}/staged")
    accounting, errors = account(spark, staged, listing, MAX_FILE_BYTES, tmp_path)

    got = {r.path: (r.reason, r.size) for r in errors.collect()}
    assert got == {f"file:{p}": (reason, p.stat().st_size) for p, reason in corpus.bad.items()}
    assert all(r.message for r in errors.collect())
    good = staged.where("error_reason is null")
    assert sorted(r.path for r in good.collect()) == sorted(f"file:{p}" for p in corpus.good)
    assert {len(r.features) for r in good.collect()} == {1280}
    assert without_errors(accounting) == (
        15,
        8,
        {"empty_file": 1, "corrupt_image": 1, "not_an_image": 1, "unsupported_format": 2,
         "decompression_bomb": 1, "too_large": 1},
    )  # fmt: skip
    assert accounting.rejection(0.2) == "46.7% of the listed files were quarantined, over quarantine.max_fraction=20.0%"
    assert accounting.rejection(0.5) is None


@pytest.mark.parametrize(
    ("featurized", "reasons", "max_fraction", "expected"),
    [
        (9, {"not_an_image": 1}, 0.1, None),  # exactly at the limit: published
        (8, {"not_an_image": 2}, 0.1, "20.0% of the listed files were quarantined, over quarantine.max_fraction=10.0%"),
        (10, {}, 0.0, None),
        (9, {"too_large": 1}, 0.0, "10.0% of the listed files were quarantined, over quarantine.max_fraction=0.0%"),
        (0, {"empty_file": 4, "corrupt_image": 6}, 1.0, "nothing was featurized: all 10 listed files were quarantined"),
    ],
)
def test_rejection_of_a_run(featurized, reasons, max_fraction, expected):
    accounting = Accounting(listed=10, featurized=featurized, reasons=reasons, errors=None)
    assert accounting.quarantined == 10 - featurized
    assert accounting.rejection(max_fraction) == expected
