"""s3a:// input, output and weights end to end, offline: the real job against moto's S3 server.

The job runs in a subprocess (spark-submit, or Python starting the JVM): the suite's shared SparkSession
cannot take new jars. S3A needs the jars of `make s3a-jars`; `make test` fetches them first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from fruitfeat.sample_data import SampleDataset, generate_sample_dataset
from fruitfeat.session import S3A_JAR_PATTERNS, S3A_JARS_ENV

from .conftest import TEST_IMAGE_SIZE

pytestmark = pytest.mark.slow
boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is a test dependency")

REPO = Path(__file__).resolve().parents[1]
SPARK_SUBMIT = Path(sys.executable).with_name("spark-submit")
JARS_DIR = Path(os.environ.get(S3A_JARS_ENV) or REPO / ".cache" / "s3a-jars")
JARS = [jar for pattern in S3A_JAR_PATTERNS for jar in sorted(JARS_DIR.glob(pattern))[-1:]]
if len(JARS) < len(S3A_JAR_PATTERNS):
    pytest.skip(f"no S3A jars in {JARS_DIR}: run `make s3a-jars`", allow_module_level=True)

REGION, BUCKET = "eu-west-1", "fruitfeat-eu-test"
#: moto accepts any key pair; S3A reads them from the environment like on a laptop (never from config).
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def s3(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def staged(s3, tmp_path_factory, random_weights_file: Path, onnx_weights_file: Path) -> SampleDataset:
    """An EU bucket with 12 images under fruits-360/, the weights and the .onnx built from them (+ sidecars) under weights/."""
    root = tmp_path_factory.mktemp("s3-sample")
    data = generate_sample_dataset(root, classes=("Apple Red", "Banana", "Lime"), train_per_class=3, test_per_class=1)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    for image in data.files:
        s3.upload_file(str(image), BUCKET, f"fruits-360/{image.relative_to(data.root).as_posix()}")
    for weights in (random_weights_file, onnx_weights_file):
        for path in (weights, weights.with_name(weights.name + ".provenance.json")):
            s3.upload_file(str(path), BUCKET, f"weights/{path.name}")
    return data


def all_keys(s3) -> set[tuple[str, str]]:
    keys = set()
    for bucket in s3.list_buckets()["Buckets"]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            keys |= {(bucket["Name"], o["Key"]) for o in page.get("Contents", [])}
    return keys


def write_config(
    tmp_path: Path, endpoint: str, prefix: str, master: str | None = None, conf: dict | None = None, **s3: str
) -> Path:
    config = {
        "input": {"path": f"s3a://{BUCKET}/fruits-360/"},
        "output": {"path": f"s3a://{BUCKET}/{prefix}/"},
        "model": {"weights": f"s3a://{BUCKET}/weights/random.onnx"},  # as conf/emr.yaml
        "featurize": {"image_size": TEST_IMAGE_SIZE, "batch_size": 8, "arrow_batch_size": 8},
        "pca": {"k": 4},
        "s3": {"endpoint": endpoint, "path_style_access": True, "region": REGION, **s3},
        "spark": {"master": master, "conf": {"spark.ui.enabled": "false", **(conf or {})}},
    }
    path = tmp_path / f"{prefix}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_job(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **CREDENTIALS, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.pop(S3A_JARS_ENV, None)  # each test says where the jars come from
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=cwd)


def read_parquet_dir(s3, prefix: str, tmp_path: Path) -> dict[str, list]:
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")["Contents"])
    assert f"{prefix}/_SUCCESS" in keys
    parts = [k for k in keys if k.endswith(".parquet")]
    local = tmp_path / prefix.replace("/", "_")
    local.mkdir()
    for i, key in enumerate(parts):
        s3.download_file(BUCKET, key, str(local / f"part-{i}.parquet"))
    return pq.read_table(local).to_pydict()


def check_published_run(s3, data: SampleDataset, weights: Path, prefix: str, tmp_path: Path) -> dict:
    latest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}/_LATEST")["Body"].read())
    run = f"{prefix}/runs/{latest['run_id']}"
    assert latest["path"] == f"s3a://{BUCKET}/{run}"

    features = read_parquet_dir(s3, f"{run}/features", tmp_path)
    expected = {f"s3a://{BUCKET}/fruits-360/{f.relative_to(data.root).as_posix()}" for f in data.files}
    assert sorted(features["path"]) == sorted(expected)  # one row per image, names with spaces intact
    vectors = np.array(features["features"], dtype=np.float64)
    assert vectors.shape == (len(data.files), 4) and np.isfinite(vectors).all() and np.abs(vectors).max() > 0

    errors = read_parquet_dir(s3, f"{run}/errors", tmp_path)
    assert errors["path"] == [] and {"path", "reason", "message"} <= errors.keys()

    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{run}/manifest.json")["Body"].read())
    assert manifest["counts"] == {"listed": 12, "featurized": 12, "quarantined": 0}
    assert manifest["weights"]["uri"] == f"s3a://{BUCKET}/weights/{weights.name}"
    assert manifest["weights"]["source"] == "test-random"
    assert manifest["weights"]["file_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    s3.head_object(Bucket=BUCKET, Key=f"{run}/_RUN_COMPLETE")
    s3.head_object(Bucket=BUCKET, Key=f"{run}/pca_model/metadata/_SUCCESS")
    return manifest


@pytest.fixture(scope="module")
def submitted(s3, endpoint, staged, tmp_path_factory) -> tuple[subprocess.CompletedProcess, set, Path]:
    """One spark-submit run (local[2], --jars): s3a:// input, output and weights; what it wrote; its cwd."""
    tmp = tmp_path_factory.mktemp("s3-submit")
    config = write_config(tmp, endpoint, "fruitfeat")
    workdir = tmp / "cwd"
    workdir.mkdir()
    before = all_keys(s3)
    proc = run_job(
        [str(SPARK_SUBMIT), "--master", "local[2]", "--jars", ",".join(map(str, JARS)),
         str(REPO / "jobs/run_pipeline.py"), "--config", str(config)],
        cwd=workdir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1500:]
    return proc, all_keys(s3) - before, workdir


def test_spark_submit_publishes_the_run_in_the_bucket(submitted, s3, staged, onnx_weights_file, tmp_path):
    proc, _, _ = submitted
    assert f"s3a://{BUCKET}/fruitfeat/runs/" in proc.stdout
    manifest = check_published_run(s3, staged, onnx_weights_file, "fruitfeat", tmp_path)
    # The model the run keeps for `fruitfeat predict` is the .onnx read from the bucket, byte for byte.
    run = f"fruitfeat/runs/{manifest['run_id']}"
    assert s3.get_object(Bucket=BUCKET, Key=f"{run}/backbone.onnx")["Body"].read() == onnx_weights_file.read_bytes()


def test_spark_submit_writes_only_under_the_output_prefix(submitted):
    _, written, workdir = submitted
    assert written and all(b == BUCKET and k.startswith("fruitfeat/") for b, k in written), sorted(written)
    assert not any("_temporary" in k or ".spark-staging" in k for _, k in written)  # renames and deletes worked
    assert list(workdir.iterdir()) == []  # nothing fell back to the local disk


READ_BACK = """
import json, sys
from fruitfeat.io import storage
from fruitfeat.config import load_config
from fruitfeat.session import build_spark_session
config = load_config(sys.argv[1])
spark = build_spark_session(config)
latest = json.loads(storage.read_text(spark, config.output.path + "/_LATEST"))
blob = bytes(range(256)) * 45_000  # 11.5 MB: three parts of 5 MB
storage.write_bytes(spark, sys.argv[2], blob)
assert storage.read_bytes(spark, sys.argv[2]) == blob
print(json.dumps({"jars": spark.conf.get("spark.jars"), "rows": spark.read.parquet(latest["features"]).count()}))
"""


def test_a_python_started_session_takes_the_jars_from_the_config(submitted, s3, endpoint, staged, tmp_path):
    """`fruitfeat run` without spark-submit: the session adds s3.jars_dir to spark.jars (driver and executors).

    It also writes a file bigger than S3A's (lowered) multipart size, the path large outputs take.
    """
    multipart = {f"spark.hadoop.fs.s3a.multipart.{key}": "5242880" for key in ("size", "threshold")}
    config = write_config(tmp_path, endpoint, "fruitfeat", "local[1]", multipart, jars_dir=str(JARS_DIR))
    blob = f"s3a://{BUCKET}/fruitfeat/multipart.bin"
    proc = run_job([sys.executable, "-c", READ_BACK, str(config), blob], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1500:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rows"] == len(staged.files)
    assert sorted(Path(jar).name for jar in result["jars"].split(",")) == sorted(jar.name for jar in JARS)
    head = s3.head_object(Bucket=BUCKET, Key="fruitfeat/multipart.bin")
    assert head["ContentLength"] == 256 * 45_000 and head["ETag"].endswith('-3"')  # uploaded in 3 parts


def test_missing_s3a_jars_fail_in_one_line(s3, endpoint, staged, tmp_path):
    config = write_config(tmp_path, endpoint, "fruitfeat-nojars")
    proc = run_job(
        [str(SPARK_SUBMIT), "--master", "local[1]", str(REPO / "jobs/run_pipeline.py"), "--config", str(config)],
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "s3a:// needs hadoop-aws" in proc.stdout + proc.stderr
    assert not [k for b, k in all_keys(s3) if k.startswith("fruitfeat-nojars/")]
