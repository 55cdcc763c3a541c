"""Phone photos through the whole job: a 49 MiB file travels alone in its Arrow batch and is featurized,
a truncated 12 MP JPEG is quarantined with its reason, and the good photos are all published."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from fruitfeat.phone_photos import phone_photo
from fruitfeat.pipeline import run_pipeline
from fruitfeat.sample_data import phone_subject

from .conftest import job_config

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
PADDED_BYTES = 49 * MIB  # under input.max_file_bytes' default of 50 MiB, over an Arrow batch's 32 MiB


@pytest.fixture(scope="module")
def phone_run(spark, sample_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("phone") / "in"
    shutil.copytree(sample_dataset.root, root)
    lime = root / "Test" / "Lime"
    photo = phone_photo(phone_subject("Lime"), seed=5, orientation=6)
    (lime / "phone.jpg").write_bytes(photo)
    # The same photo with bytes after its end-of-image marker: what decoders ignore, Arrow still carries.
    (lime / "phone_padded.jpg").write_bytes(photo + b"\0" * (PADDED_BYTES - len(photo)))
    (lime / "phone_truncated.jpg").write_bytes(photo[: len(photo) // 2])
    result = run_pipeline(job_config(root, tmp_path_factory.mktemp("phone-out")), spark)
    return root, result


def test_the_largest_file_sets_one_row_per_arrow_batch(phone_run):
    _, result = phone_run
    featurize = result.manifest["featurize"]
    assert featurize["largest_file_bytes"] == PADDED_BYTES
    assert featurize["arrow_batch_rows"] == 1  # 32 MiB // 49 MiB, never 0
    assert featurize["decode"] == {"fit": "crop", "jpeg_draft": True}


def test_a_49_mib_file_is_featurized_like_the_photo_it_holds(spark, phone_run):
    root, result = phone_run
    rows = spark.read.parquet(result.features_path)
    features = {r.path.rsplit("/", 1)[1]: np.array(r.features) for r in rows.where("label = 'Lime'").collect()}
    assert {"phone.jpg", "phone_padded.jpg"} <= features.keys()
    np.testing.assert_array_equal(features["phone_padded.jpg"], features["phone.jpg"])


def test_a_truncated_phone_photo_is_quarantined_with_its_reason(spark, phone_run, sample_dataset):
    root, result = phone_run
    errors = spark.read.parquet(f"{result.run_path}/errors").collect()
    assert [(e.path.rsplit("/", 1)[1], e.reason, e.size) for e in errors] == [
        ("phone_truncated.jpg", "corrupt_image", (root / "Test/Lime/phone_truncated.jpg").stat().st_size)
    ]
    assert "truncated" in errors[0].message
    assert result.manifest["counts"] == {
        "listed": len(sample_dataset.files) + 3, "featurized": len(sample_dataset.files) + 2, "quarantined": 1
    }
