"""One local[2] SparkSession for the whole suite, plus small generated inputs shared by the tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fruitfeat.config import JobConfig, config_from_dict  # noqa: E402
from fruitfeat.featurize.model import PROVENANCE_SUFFIX, WeightsPayload, resolve_weights  # noqa: E402
from fruitfeat.io.uris import local_path  # noqa: E402
from fruitfeat.sample_data import SampleDataset, generate_sample_dataset  # noqa: E402
from fruitfeat.session import build_spark_session  # noqa: E402

#: Small network input keeps CPU inference fast; MobileNetV2 accepts 32 px and up.
TEST_IMAGE_SIZE = 32
SAMPLE_CLASSES = ("Apple Red", "Banana", "Lime")


def job_config(input_path: str | Path, output_path: str | Path, **sections) -> JobConfig:
    """A valid test config; keyword arguments replace whole sections."""
    data = {
        "input": {"path": str(input_path)},
        "output": {"path": str(output_path)},
        "model": {"weights": "random", "seed": 0},
        "featurize": {"image_size": TEST_IMAGE_SIZE, "batch_size": 8, "arrow_batch_size": 16},
        "pca": {"k": 4},
        "spark": {
            "master": "local[2]",
            "app_name": "fruitfeat-tests",
            # 2g as a laptop run has (conf/local.yaml: 4g): the suite runs a few hundred jobs in one JVM,
            # some of them with 49 MiB files.
            "conf": {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2", "spark.driver.memory": "2g"},
        },
    }
    data.update(sections)
    return config_from_dict(data)


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory) -> SampleDataset:
    root = tmp_path_factory.mktemp("sample")
    return generate_sample_dataset(root, classes=SAMPLE_CLASSES, train_per_class=4, test_per_class=2)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    config = job_config(tmp_path_factory.mktemp("unused-in"), tmp_path_factory.mktemp("unused-out"))
    session = build_spark_session(config)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def random_payload() -> WeightsPayload:
    return resolve_weights("random", TEST_IMAGE_SIZE, 0, read_bytes=lambda uri: b"")


@pytest.fixture(scope="session")
def random_weights_file(tmp_path_factory) -> Path:
    """A ``.weights.h5`` file with seeded random weights and a provenance sidecar, like `make weights` writes."""
    import hashlib
    import json

    import keras

    from fruitfeat.featurize.model import build_backbone

    keras.utils.set_random_seed(7)
    path = tmp_path_factory.mktemp("weights") / "random.weights.h5"
    build_backbone(TEST_IMAGE_SIZE).save_weights(str(path))
    sidecar = {"source": "test-random", "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    path.with_name(path.name + PROVENANCE_SUFFIX).write_text(json.dumps(sidecar))
    return path


@pytest.fixture(scope="session")
def onnx_weights_file(random_weights_file, tmp_path_factory) -> Path:
    """The ``.onnx`` (and sidecar) that `fruitfeat weights` builds from ``random_weights_file``, at the test size."""
    from fruitfeat.featurize.weights import export_onnx, onnx_path_for

    out = tmp_path_factory.mktemp("onnx") / onnx_path_for(random_weights_file).name
    export_onnx(random_weights_file, out, TEST_IMAGE_SIZE)
    return out


@pytest.fixture()
def broadcast_payload(spark, random_payload):
    handle = spark.sparkContext.broadcast(random_payload)
    yield handle
    handle.unpersist()


def local_read_bytes(uri: str) -> bytes:
    path = local_path(uri)
    if path is None or not path.exists():
        raise FileNotFoundError(uri)
    return path.read_bytes()
