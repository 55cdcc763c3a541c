"""The packed venv of `make emr-package` runs the executors, the way EMR uses it (--archives ...#environment).

Building the archive installs TensorFlow again (~1.5 min, ~2 GB), too heavy for every `make test`: run
`make emr-package` first; without dist/fruitfeat-env.tar.gz this module is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pyspark
import pytest
import yaml

from .conftest import TEST_IMAGE_SIZE

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO / "dist" / "fruitfeat-env.tar.gz"
if not ARCHIVE.is_file():
    pytest.skip(f"{ARCHIVE.relative_to(REPO)} missing: run `make emr-package`", allow_module_level=True)
if any(source.stat().st_mtime > ARCHIVE.stat().st_mtime for source in (REPO / "fruitfeat").glob("*.py")):
    # Executors would run older code than the driver: a mismatch, not a finding.
    pytest.skip(f"{ARCHIVE.name} is older than fruitfeat/: rerun `make emr-package`", allow_module_level=True)


def test_archive_holds_fruitfeat_but_not_pyspark():
    with tarfile.open(ARCHIVE) as archive:
        packages = {Path(n).parts[3] for n in archive.getnames() if n.startswith("lib/python3.11/site-packages/")}
    assert {"fruitfeat", "tensorflow", "boto3"} <= packages
    assert not packages & {"pyspark", "py4j"}  # EMR's own Spark 3.5.6 provides them
    assert not any(p.startswith("__editable__") for p in packages)  # the code itself, not a link to a checkout


def test_executors_run_the_packed_environment(tmp_path, sample_dataset, random_weights_file):
    config = tmp_path / "job.yaml"
    output = tmp_path / "out"
    config.write_text(
        yaml.safe_dump(
            {
                "input": {"path": str(sample_dataset.root)},
                "output": {"path": str(output)},
                "model": {"weights": str(random_weights_file)},
                "featurize": {"image_size": TEST_IMAGE_SIZE, "batch_size": 8, "arrow_batch_size": 8},
                "pca": {"k": 4},
                "spark": {"conf": {"spark.ui.enabled": "false"}},
            }
        )
    )
    env = {
        **os.environ,
        # What the EMR step sets: Python workers run the archive's interpreter, unpacked in each executor.
        "PYSPARK_PYTHON": "./environment/bin/python",
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    command = [
        str(Path(sys.executable).with_name("spark-submit")), "--master", "local-cluster[1,1,1024]",
        "--archives", f"{ARCHIVE}#environment",
        "--conf", "spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python",
        str(REPO / "jobs/run_pipeline.py"), "--config", str(config),
    ]  # fmt: skip
    # local-cluster executors work in $SPARK_HOME/work/<app id>/<executor id>/, where each unpacks the
    # 2 GB archive: read the evidence, then remove this run's directories even if the job failed.
    work_root = Path(pyspark.__file__).parent / "work"
    before = set(work_root.glob("app-*"))
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    finally:
        ours = [d for d in set(work_root.glob("app-*")) - before if f"{ARCHIVE.name}#environment" in "".join(_logs(d))]
        unpacked = [p for d in ours for p in d.glob("*/environment/lib/python3.11/site-packages/fruitfeat")]
        logs = "".join(log for d in ours for log in _logs(d))
        for directory in ours:
            shutil.rmtree(directory, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1500:]
    assert unpacked and "Unpacking an archive" in logs

    latest = json.loads((output / "_LATEST").read_text())
    manifest = json.loads((output / "runs" / latest["run_id"] / "manifest.json").read_text())
    assert manifest["counts"]["featurized"] == len(sample_dataset.files)
    assert manifest["spark"]["master"] == "local-cluster[1,1,1024]"
    # The models were built by the executor's Python workers (./environment/bin/python), not the driver.
    assert manifest["model_builds"] and manifest["spark"]["driver"] not in manifest["model_builds"]


def _logs(app_dir: Path) -> list[str]:
    return [log.read_text(errors="replace") for log in app_dir.glob("*/stderr")]
