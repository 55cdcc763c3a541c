"""fruitfeat.io.listing: which files a run reads, and the listing every one of them is accounted against."""

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from fruitfeat.errors import InputError
from fruitfeat.io.listing import (
    _load_binary_files,
    extension_glob,
    hadoop_path_string,
    input_files,
    list_images,
    list_input,
    read_files,
    with_labels,
)

from .bad_inputs import make_tree

LISTED = T.StructType(
    [
        T.StructField("path", T.StringType()),
        T.StructField("label", T.StringType()),
        T.StructField("split", T.StringType()),
        T.StructField("content", T.BinaryType()),
    ]
)
LABELLED = "path string, label string, split string"


def test_extension_glob_is_case_insensitive():
    assert extension_glob(["jpg", "png"]) == "*.{[jJ][pP][gG],[pP][nN][gG]}"
    assert extension_glob(["png", "jpg", "png"]) == "*.{[jJ][pP][gG],[pP][nN][gG]}"  # sorted, no duplicates


def test_with_labels_reads_class_and_split_from_the_path(spark):
    paths = [
        ("file:/d/Training/Apple Red/r_1_100.jpg",),
        ("s3a://b/fruits/Test/Banana/2_100.jpg",),
        ("file:/d/Validation/Kiwi/3.jpg",),
        ("x.jpg",),
    ]
    df = spark.createDataFrame(paths, "path string")
    expected = spark.createDataFrame(
        [
            ("file:/d/Training/Apple Red/r_1_100.jpg", "Apple Red", "Training"),
            ("s3a://b/fruits/Test/Banana/2_100.jpg", "Banana", "Test"),
            ("file:/d/Validation/Kiwi/3.jpg", "Kiwi", None),
            ("x.jpg", None, None),
        ],
        LABELLED,
    )
    assert_df_equality(df.transform(with_labels), expected, ignore_nullable=True)


def test_list_images_finds_images_in_any_case_and_skips_other_files(spark, tmp_path):
    files = {
        "Training/Apple Red/r_0_100.jpg": b"apple",
        "Training/Apple Red/r_1_100.JPG": b"APPLE",
        "Test/Banana/0_100.jpeg": b"banana",
        "Test/Banana/1_100.PnG": b"png",
        "loose/Kiwi/k.jpg": b"kiwi",
        "Training/Apple Red/notes.txt": b"not an image",
        "Training/Apple Red/r_2_100.gif": b"unsupported extension",
    }
    make_tree(tmp_path, files)
    listed = list_images(spark, f"file://{tmp_path}", ["jpg", "jpeg", "png"])
    expected = spark.createDataFrame(
        [
            (f"file:{tmp_path}/Training/Apple Red/r_0_100.jpg", "Apple Red", "Training", b"apple"),
            (f"file:{tmp_path}/Training/Apple Red/r_1_100.JPG", "Apple Red", "Training", b"APPLE"),
            (f"file:{tmp_path}/Test/Banana/0_100.jpeg", "Banana", "Test", b"banana"),
            (f"file:{tmp_path}/Test/Banana/1_100.PnG", "Banana", "Test", b"png"),
            (f"file:{tmp_path}/loose/Kiwi/k.jpg", "Kiwi", None, b"kiwi"),
        ],
        LISTED,
    )
    assert_df_equality(listed, expected, ignore_row_order=True, ignore_nullable=True)


def test_list_images_drops_files_over_the_size_limit(spark, tmp_path):
    make_tree(tmp_path, {"Training/Lime/small.jpg": b"x" * 10, "Training/Lime/edge.jpg": b"x" * 20, "Test/Lime/big.jpg": b"x" * 21})
    listed = list_images(spark, f"file://{tmp_path}", ["jpg"], max_file_bytes=20)
    assert sorted(r.path.rsplit("/", 1)[1] for r in listed.select("path").collect()) == ["edge.jpg", "small.jpg"]


def test_list_images_on_the_generated_sample(spark, sample_dataset):
    listed = list_images(spark, f"file://{sample_dataset.root}", ["jpg"])
    counts = {(r["split"], r["label"]): r["count"] for r in listed.groupBy("split", "label").count().collect()}
    assert counts == {(split, fruit): n for fruit in ("Apple Red", "Banana", "Lime") for split, n in (("Training", 4), ("Test", 2))}


def test_missing_input_is_a_clear_error(spark, tmp_path):
    with pytest.raises(InputError, match="cannot list images under .*nope"):
        list_images(spark, f"file://{tmp_path}/nope", ["jpg"])
    with pytest.raises(InputError, match="cannot list images under .*nope"):
        list_input(spark, f"file://{tmp_path}/nope", ["jpg"], max_file_bytes=100)


def test_an_input_without_images_is_refused_by_the_listing(spark, tmp_path):
    make_tree(tmp_path, {"Training/Kiwi/readme.txt": b"no images", "Training/Kiwi/k.gif": b"GIF89a"})
    with pytest.raises(InputError, match=r"no images \(jpg, png\) under .*make sample-data"):
        list_input(spark, f"file://{tmp_path}", ["jpg", "png"], max_file_bytes=100)


def test_hadoop_path_string_undoes_uri_escapes():
    assert hadoop_path_string("file:///d/Training/Apple%20Red/a.jpg") == "file:/d/Training/Apple Red/a.jpg"
    assert hadoop_path_string("s3a://bucket/x/Apple%20Red/a.jpg") == "s3a://bucket/x/Apple Red/a.jpg"
    assert hadoop_path_string("file:/d/P%C3%AAche/%2520.jpg") == "file:/d/Pêche/%20.jpg"


FILE_ROWS = "path string, label string, split string, length long, modification_time timestamp, content binary"


def _mtime(path):
    """A file's modification time as Hadoop reports it (milliseconds)."""
    from datetime import datetime

    return datetime.fromtimestamp(path.stat().st_mtime_ns // 1_000_000 / 1000)


def test_listing_accounts_for_zero_byte_and_oversized_files(spark, tmp_path):
    make_tree(
        tmp_path,
        {
            "Training/Lime/ok.jpg": b"12345",
            "Training/Lime/empty file.jpg": b"",
            "Test/Lime/big.jpg": b"x" * 100,
        },
    )
    listing = list_input(spark, f"file://{tmp_path}", ["jpg"], max_file_bytes=50)
    assert listing.file_count == 3
    files = spark.createDataFrame(
        [
            (f"file:{tmp_path}/Training/Lime/ok.jpg", "Lime", "Training"),
            (f"file:{tmp_path}/Training/Lime/empty file.jpg", "Lime", "Training"),
            (f"file:{tmp_path}/Test/Lime/big.jpg", "Lime", "Test"),
        ],
        LABELLED,
    )
    # The zero-byte file is in the listing although binaryFile's scan never returns it.
    assert_df_equality(listing.files(), files, ignore_row_order=True, ignore_nullable=True)
    ok = tmp_path / "Training/Lime/ok.jpg"
    images = spark.createDataFrame([(f"file:{ok}", "Lime", "Training", 5, _mtime(ok), b"12345")], FILE_ROWS)
    assert_df_equality(listing.images, images, ignore_nullable=True)
    assert_df_equality(listing.readable, images.drop("label", "split", "content"), ignore_nullable=True)
    oversized = spark.createDataFrame(
        [(f"file:{tmp_path}/Test/Lime/big.jpg", "Lime", "Test", 100)], f"{LABELLED}, size long"
    )
    assert_df_equality(listing.oversized, oversized, ignore_nullable=True)
    assert listing.largest_file_bytes() == 5  # the 100-byte file is never read, so it does not count


def test_input_files_in_one_call_equal_pysparks_element_by_element(spark, tmp_path):
    make_tree(
        tmp_path,
        {"Training/Apple Red/0 1.jpg": b"a", "Training/Pêche/é,2.jpg": b"bb", "Test/Lime/%20.jpg": b"", "Test/Lime/x.JPG": b"c"},
    )
    relation = _load_binary_files(spark, f"file://{tmp_path}", ["jpg"])
    listed = input_files(relation)
    assert listed == tuple(relation.inputFiles())
    assert sorted(hadoop_path_string(u) for u in listed) == sorted(
        f"file:{tmp_path}/{p}" for p in ("Training/Apple Red/0 1.jpg", "Training/Pêche/é,2.jpg", "Test/Lime/%20.jpg", "Test/Lime/x.JPG")
    )


def test_paths_of_the_listing_match_the_scans_paths(spark, tmp_path):
    """The accounting anti-joins the listing's paths with the scan's: names with spaces, accents and % must agree."""
    make_tree(tmp_path, {"Training/Apple Red/a b.jpg": b"1", "Training/Pêche/é%41.jpg": b"2", "Test/Lime/100%.jpg": b"3"})
    listing = list_input(spark, f"file://{tmp_path}", ["jpg"], max_file_bytes=100)
    assert_df_equality(
        listing.files().select("path"), listing.images.select("path"), ignore_row_order=True, ignore_nullable=True
    )


def test_read_files_reads_exactly_the_given_files_whatever_their_names(spark, tmp_path):
    """The store's new files are read by path: glob characters in a name are taken literally."""
    make_tree(tmp_path, {"Training/Lime/a[1].jpg": b"one", "Training/Lime/b{2,3}.jpg": b"two",
                         "Training/Lime/a1.jpg": b"not asked for", "Test/Apple Red/c* d?.jpg": b"three"})
    wanted = [tmp_path / "Training/Lime/a[1].jpg", tmp_path / "Training/Lime/b{2,3}.jpg",
              tmp_path / "Test/Apple Red/c* d?.jpg"]
    got = read_files(spark, [f"file:{p}" for p in wanted])
    expected = spark.createDataFrame(
        [(f"file:{p}", p.parent.name, p.parent.parent.name, len(p.read_bytes()), _mtime(p), p.read_bytes())
         for p in wanted], FILE_ROWS)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
