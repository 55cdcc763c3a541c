from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from fruitfeat.io.listing import InputError, extension_glob, list_images, with_labels

LISTED = T.StructType(
    [
        T.StructField("path", T.StringType()),
        T.StructField("label", T.StringType()),
        T.StructField("split", T.StringType()),
        T.StructField("content", T.BinaryType()),
    ]
)


def make_tree(root: Path, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def test_extension_glob_is_case_insensitive():
    assert extension_glob(["jpg", "png"]) == "*.{[jJ][pP][gG],[pP][nN][gG]}"


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
        "path string, label string, split string",
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


def test_list_images_on_the_generated_sample(spark, sample_dataset):
    listed = list_images(spark, f"file://{sample_dataset.root}", ["jpg"])
    counts = {(r["split"], r["label"]): r["count"] for r in listed.groupBy("split", "label").count().collect()}
    assert counts == sample_dataset.counts()


def test_missing_input_is_a_clear_error(spark, tmp_path):
    with pytest.raises(InputError, match="cannot list images under .*nope"):
        list_images(spark, f"file://{tmp_path}/nope", ["jpg"])


def test_hadoop_path_string_undoes_uri_escapes():
    from fruitfeat.io.listing import hadoop_path_string

    assert hadoop_path_string("file:///d/Training/Apple%20Red/a.jpg") == "file:/d/Training/Apple Red/a.jpg"
    assert hadoop_path_string("s3a://bucket/x/Apple%20Red/a.jpg") == "s3a://bucket/x/Apple Red/a.jpg"


def test_listing_accounts_for_zero_byte_and_oversized_files(spark, tmp_path):
    from fruitfeat.io.listing import list_input

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
    assert sorted(r.path for r in listing.files.collect()) == sorted(
        f"file:{tmp_path}/{p}" for p in ("Training/Lime/ok.jpg", "Training/Lime/empty file.jpg", "Test/Lime/big.jpg")
    )
    assert [r.path for r in listing.images.collect()] == [f"file:{tmp_path}/Training/Lime/ok.jpg"]
    expected = spark.createDataFrame(
        [(f"file:{tmp_path}/Test/Lime/big.jpg", "Lime", "Test", 100)], "path string, label string, split string, size long"
    )
    assert_df_equality(listing.oversized, expected, ignore_nullable=True)


def _listing_jobs(spark, root: str, group: str) -> tuple[int, list[int]]:
    from fruitfeat.io.listing import list_input

    sc = spark.sparkContext
    sc.setJobGroup(group, "listing")
    try:
        listing = list_input(spark, root, ["jpg"], max_file_bytes=1000)
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    return listing.file_count, list(sc.statusTracker().getJobIdsForGroup(group))


def test_a_local_tree_with_many_class_folders_is_listed_without_spark_jobs(spark, tmp_path):
    """Fruits-360 has ~140 classes a split: Spark would list them with a job of one task per folder."""
    from fruitfeat.io.listing import PARALLEL_LISTING_KEY

    make_tree(tmp_path, {f"{split}/Class {c}/{c}_100.jpg": b"x" for split in ("Training", "Test") for c in range(40)})
    assert _listing_jobs(spark, f"file://{tmp_path}", "serial-listing") == (80, [])
    assert spark.conf.get(PARALLEL_LISTING_KEY, None) is None  # the session is left as it was

    # The parallel listing the object stores keep, for comparison: a threshold set in the session wins.
    spark.conf.set(PARALLEL_LISTING_KEY, "32")
    try:
        count, jobs = _listing_jobs(spark, f"file://{tmp_path}", "parallel-listing")
    finally:
        spark.conf.unset(PARALLEL_LISTING_KEY)
    assert count == 80 and len(jobs) >= 1


def test_input_files_in_one_call_equal_pysparks_element_by_element(spark, tmp_path):
    from fruitfeat.io.listing import _load_binary_files, input_files

    make_tree(
        tmp_path,
        {"Training/Apple Red/0 1.jpg": b"a", "Training/Pêche/é,2.jpg": b"bb", "Test/Lime/%20.jpg": b"", "Test/Lime/x.JPG": b"c"},
    )
    relation = _load_binary_files(spark, f"file://{tmp_path}", ["jpg"])
    assert input_files(relation) == tuple(relation.inputFiles())
    assert len(input_files(relation)) == 4


def test_the_listing_knows_sizes_and_builds_the_path_frame_only_on_demand(spark, tmp_path):
    from fruitfeat.io.listing import list_input

    make_tree(tmp_path, {"Training/Lime/a.jpg": b"1" * 10, "Training/Lime/b.jpg": b"2" * 32, "Test/Lime/c.jpg": b""})
    listing = list_input(spark, f"file://{tmp_path}", ["jpg"], max_file_bytes=1000)
    assert (listing.file_count, listing.total_bytes) == (3, 42)
    assert "files" not in listing.__dict__  # nothing built yet
    assert listing.files.count() == 3 and "files" in listing.__dict__


@pytest.mark.parametrize(
    ("weighted", "cores", "cap", "splits"),
    [
        (552, 2, 128, 6),  # 8,000 small images on 2 cores: 5 splits by default, 6 balanced
        (138, 2, 128, 2),  # 2,000 images: one wave
        (10, 2, 128, 2),  # a tiny input still uses every core
        (1090, 2, 128, 10),
        (1000, 64, 128, 64),
    ],
)
def test_balanced_splits_fill_whole_waves_and_never_exceed_the_cap(weighted, cores, cap, splits):
    from fruitfeat.io.listing import balanced_split_bytes

    mb = 1024 * 1024
    split = balanced_split_bytes(weighted * mb, cores, cap * mb)
    assert split <= cap * mb
    assert -(-weighted * mb // split) == splits and splits % cores == 0


def test_balanced_splits_make_the_image_scan_a_multiple_of_the_cores(spark, tmp_path):
    from fruitfeat.io.listing import file_split_bytes, list_input, listing_split_bytes

    make_tree(tmp_path, {f"Training/Lime/{i:02d}.jpg": bytes([i]) * 100 for i in range(12)})
    listing = list_input(spark, f"file://{tmp_path}", ["jpg"], max_file_bytes=1000)
    open_cost = int(spark.conf.get("spark.sql.files.openCostInBytes").rstrip("b"))
    weight = 100 + open_cost
    key = "spark.sql.files.maxPartitionBytes"
    before = spark.conf.get(key)
    spark.conf.set(key, str(5 * weight))  # Spark alone: splits of 5, 5 and 2 files, a last wave on one core
    try:
        assert listing.images.select("path").rdd.getNumPartitions() == 3
        split = listing_split_bytes(spark, listing, open_cost, max_split_bytes=5 * weight)
        with file_split_bytes(spark, split):
            sizes = listing.images.select("path").rdd.glom().map(len).collect()
            assert spark.conf.get(key) == str(split)
        assert sizes == [3, 3, 3, 3]  # two full waves of two tasks
        assert spark.conf.get(key) == str(5 * weight)  # the session's setting is back
    finally:
        spark.conf.set(key, before)
