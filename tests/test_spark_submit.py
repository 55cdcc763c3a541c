"""The real entry point under spark-submit: local[2], and local-cluster with separate executor processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from .conftest import TEST_IMAGE_SIZE

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SPARK_SUBMIT = Path(sys.executable).with_name("spark-submit")


def submit(master: str, config: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    command = [str(SPARK_SUBMIT), "--master", master, *extra, str(REPO / "jobs/run_pipeline.py"), "--config", str(config)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)


def write_config(tmp_path: Path, input_root: Path, weights: Path, name: str) -> tuple[Path, Path]:
    output = tmp_path / f"out-{name}"
    config = {
        "input": {"path": str(input_root)},
        "output": {"path": str(output)},
        "model": {"weights": str(weights)},
        "featurize": {"image_size": TEST_IMAGE_SIZE, "batch_size": 8, "arrow_batch_size": 8},
        "pca": {"k": 4},
        "spark": {"master": None, "conf": {"spark.ui.enabled": "false"}},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, output


def published(output: Path) -> tuple[dict, dict[str, np.ndarray]]:
    latest = json.loads((output / "_LATEST").read_text())
    manifest = json.loads((output / "runs" / latest["run_id"] / "manifest.json").read_text())
    table = pq.read_table(output / "runs" / latest["run_id"] / "features").to_pydict()
    return manifest, {p: np.array(f) for p, f in zip(table["path"], table["features"])}


def aligned(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Both runs' features in path order; each PCA component's sign made to agree."""
    paths = sorted(a)
    x, y = np.stack([a[p] for p in paths]), np.stack([b[p] for p in paths])
    return x, y * np.sign((x * y).sum(axis=0))


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, sample_dataset, onnx_weights_file):
    """As conf/local.yaml: model.weights names the .onnx that `fruitfeat weights` built."""
    tmp = tmp_path_factory.mktemp("submit-local")
    config, output = write_config(tmp, sample_dataset.root, onnx_weights_file, "local")
    proc = submit("local[2]", config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, output


def test_spark_submit_local_publishes_features(local_run, sample_dataset, onnx_weights_file):
    proc, output = local_run
    manifest, features = published(output)
    assert f"fruitfeat: published run {manifest['run_id']}" in proc.stdout and str(output) in proc.stdout
    assert sorted(features) == sorted(f"file:{p}" for p in sample_dataset.files)
    assert {len(v) for v in features.values()} == {4}
    assert manifest["counts"] == {"listed": 18, "featurized": 18, "quarantined": 0}
    assert manifest["weights"]["source"] == "test-random"
    assert manifest["weights"]["uri"] == f"file://{onnx_weights_file}"
    assert manifest["weights"]["broadcast_sha256"] == hashlib.sha256(onnx_weights_file.read_bytes()).hexdigest()
    assert manifest["spark"]["master"] == "local[2]"


def test_local_cluster_executors_get_the_broadcast_and_agree(local_run, tmp_path, sample_dataset, random_weights_file):
    """Separate executor processes, fed the .weights.h5 converted on the driver: the local run's .onnx features."""
    config, output = write_config(tmp_path, sample_dataset.root, random_weights_file, "cluster")
    proc = submit(
        "local-cluster[2,1,1024]",
        config,
        # Start featurizing only once both executors are up, so both take tasks.
        "--conf", "spark.scheduler.minRegisteredResourcesRatio=1.0",
        "--conf", "spark.scheduler.maxRegisteredResourcesWaitingTime=120s",
        "--conf", "spark.sql.files.maxPartitionBytes=65536",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest, cluster = published(output)
    assert manifest["spark"]["master"] == "local-cluster[2,1,1024]"
    assert manifest["weights"]["uri"] == f"file://{random_weights_file}" and manifest["weights"]["onnx"]["opset"] == 17

    _, local = published(local_run[1])
    assert cluster.keys() == local.keys()
    x, y = aligned(local, cluster)
    np.testing.assert_allclose(y / np.abs(x).max(), x / np.abs(x).max(), atol=1e-4)


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process below ``pid``."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent:
                found.append((child, commands.get(child, "")))
                frontier.append(child)
    return found


def test_losing_an_executor_mid_featurization_changes_nothing(tmp_path, spark, random_weights_file):
    import signal
    import time

    from fruitfeat.pipeline import run_pipeline
    from fruitfeat.sample_data import generate_sample_dataset

    from .conftest import job_config

    data = generate_sample_dataset(tmp_path / "in", train_per_class=60, test_per_class=20)
    config, output = write_config(tmp_path, data.root, random_weights_file, "killed")
    text = config.read_text().replace(f"image_size: {TEST_IMAGE_SIZE}", "image_size: 96")
    config.write_text(text)

    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    command = [
        str(SPARK_SUBMIT), "--master", "local-cluster[2,1,1024]",
        "--conf", "spark.scheduler.minRegisteredResourcesRatio=1.0",
        "--conf", "spark.sql.files.maxPartitionBytes=4194304",
        str(REPO / "jobs/run_pipeline.py"), "--config", str(config),
    ]
    # spark-submit sends the Python driver's stderr to its stdout: both go to one file, never a pipe
    # that nobody drains while the job runs.
    log_path = tmp_path / "spark-submit.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True, cwd=REPO)
        killed = None
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            if f"featurizing new and changed files among {len(data.files)} into the store" in log_path.read_text():
                executors = [p for p, cmd in descendants(proc.pid) if "CoarseGrainedExecutorBackend" in cmd]
                # A task is running once an executor has spawned Python workers.
                busy = [p for p in executors if any("pyspark" in cmd for _, cmd in descendants(p))]
                if busy:
                    killed = busy[0]
                    os.kill(killed, signal.SIGKILL)
            time.sleep(0.2)
        proc.wait(timeout=600)
    log = log_path.read_text()
    assert killed is not None, "featurization ended before an executor could be killed"
    assert proc.returncode == 0, log[-3000:]
    assert "fruitfeat: published run" in log
    assert "Lost executor" in log or "ExecutorLostFailure" in log or "exited" in log

    reference_config = job_config(
        data.root, tmp_path / "reference",
        model={"weights": str(random_weights_file)},
        featurize={"image_size": 96, "batch_size": 8, "arrow_batch_size": 8},
    )
    run_pipeline(reference_config, spark)
    manifest, disturbed = published(output)
    _, reference = published(tmp_path / "reference")
    assert manifest["counts"]["featurized"] == len(data.files) == len(reference)
    assert disturbed.keys() == reference.keys()
    x, y = aligned(reference, disturbed)
    np.testing.assert_allclose(y / np.abs(x).max(), x / np.abs(x).max(), atol=1e-4)
