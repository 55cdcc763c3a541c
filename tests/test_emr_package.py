"""The packaged fruitfeat: the wheel carries what fruitfeat.cloud reads, and a packed venv runs the executors.

Session fixtures build everything in pytest's tmp dir, never in the checkout: the wheel (from a
copy of the sources: setuptools writes build/ and *.egg-info beside them) and a small packed venv,
made the way `make emr-package` makes the real one (fruitfeat installed from the wheel, not
editable; no pyspark or py4j; venv-pack). The real archive also installs TensorFlow, onnxruntime,
pyarrow ... again (~1.5 min, ~2 GB); here the executors get the test venv's copies through
``spark.executorEnv.PYTHONPATH``: a directory of links to its packages that leaves out fruitfeat,
pyspark and py4j, so fruitfeat can only come from the archive and PySpark only from Spark itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pyspark
import pytest
import yaml

from .conftest import TEST_IMAGE_SIZE

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ARCHIVE_NAME = "fruitfeat-env.tar.gz"
#: What the packed venv must not hold (EMR's Spark brings its own), nor the links stand in for.
NOT_PACKED = ("fruitfeat", "pyspark", "py4j", "__editable__", "_distutils_hack", "distutils-precedence")
TEMPLATES = {"fruitfeat/cloud/templates/step.json", "fruitfeat/cloud/templates/configurations.json"}


def _run(command: list[str | Path], cwd: Path | None = None, pythonpath: Path | None = None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel`` of a copy of the sources, like `make wheel`, into the tmp dir."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO / "fruitfeat", source / "fruitfeat", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(root / "dist"), "./source"], cwd=root)
    (built,) = (root / "dist").glob("fruitfeat-*.whl")
    return built


@pytest.fixture(scope="session")
def packed_env(wheel, tmp_path_factory) -> Path:
    """venv + the wheel (no dependencies), packed by venv-pack 0.2.0 as `make emr-package` does."""
    root = tmp_path_factory.mktemp("emr-package")
    venv, tools, archive = root / "emr-venv", root / "emr-tools", root / ARCHIVE_NAME
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    pip = [sys.executable, "-m", "pip"]
    # No .pyc in the archive: the ones the executors' Python workers write show that they imported it.
    _run([*pip, "--python", str(venv / "bin" / "python"), "install", "--quiet", "--no-deps", "--no-compile", wheel])
    _run([*pip, "install", "--quiet", "--target", str(tools), "venv-pack==0.2.0"])
    _run([sys.executable, "-m", "venv_pack", "--quiet", "-p", str(venv), "-o", str(archive)], pythonpath=tools)
    return archive


@pytest.fixture(scope="session")
def executor_packages(tmp_path_factory) -> Path:
    """Links to the test venv's third-party packages, without fruitfeat, pyspark and py4j."""
    links = tmp_path_factory.mktemp("executor-packages")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(NOT_PACKED) and entry.suffix != ".pth" and entry.name != "__pycache__":
            (links / entry.name).symlink_to(entry)
    return links


def test_wheel_holds_the_templates_and_they_load_from_an_installed_copy(wheel, tmp_path):
    assert TEMPLATES <= set(zipfile.ZipFile(wheel).namelist())
    site = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)])
    outside = tmp_path / "elsewhere"  # not a checkout: no deploy/, jobs/, conf/ or dist/ around
    outside.mkdir()
    probe = (
        "import json, fruitfeat; from fruitfeat.cloud import requests; "
        "step = requests.build_step('s3://b/emr'); "
        "print(json.dumps([fruitfeat.__file__, step['HadoopJarStep']['Args'][-3], "
        "len(requests.load_configurations())]))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=outside, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    module_file, entry_uri, configurations = json.loads(result.stdout)
    assert Path(module_file).is_relative_to(site)  # the installed copy, not the checkout's editable one
    assert entry_uri == "s3://b/emr/jobs/run_pipeline.py"
    assert configurations == 4

    # From outside a checkout, the checkout-only files are looked for in the current directory, by option.
    cli = [sys.executable, "-m", "fruitfeat.cloud.cli", "upload", "--bucket", "b"]
    result = subprocess.run(cli, cwd=outside, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(f"fruitfeat: error: --config conf/emr.yaml: no such file (relative to {outside})")


def test_archive_holds_fruitfeat_from_the_wheel_but_not_pyspark(packed_env):
    with tarfile.open(packed_env) as archive:
        names = archive.getnames()
    site = "lib/python3.11/site-packages/"
    packages = {Path(n).parts[3] for n in names if n.startswith(site) and len(Path(n).parts) > 3}
    assert "fruitfeat" in packages and "bin/python" in names
    assert {site + t for t in TEMPLATES} <= set(names)
    assert not packages & {"pyspark", "py4j"}  # EMR's own Spark 3.5.6 provides them
    assert not any(p.startswith("__editable__") for p in packages)  # the code itself, not a link to a checkout
    assert not [n for n in names if n.startswith(site + "fruitfeat/") and n.endswith(".pyc")]


def test_executors_run_the_packed_environment(
    packed_env, executor_packages, tmp_path, sample_dataset, random_weights_file
):
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
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")},
        # What the EMR step sets: Python workers run the archive's interpreter, unpacked in each executor.
        "PYSPARK_PYTHON": "./environment/bin/python",
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    command = [
        str(Path(sys.executable).with_name("spark-submit")), "--master", "local-cluster[1,1,1024]",
        "--archives", f"{packed_env}#environment",
        "--conf", "spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python",
        "--conf", f"spark.executorEnv.PYTHONPATH={executor_packages}",
        str(REPO / "jobs/run_pipeline.py"), "--config", str(config),
    ]  # fmt: skip
    # local-cluster executors work in $SPARK_HOME/work/<app id>/<executor id>/, where each unpacks the
    # archive: read the evidence, then remove this run's directories even if the job failed.
    work_root = Path(pyspark.__file__).parent / "work"
    before = set(work_root.glob("app-*"))
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    finally:
        ours = [d for d in set(work_root.glob("app-*")) - before if f"{ARCHIVE_NAME}#environment" in "".join(_logs(d))]
        unpacked = [p for d in ours for p in d.glob("*/environment/lib/python3.11/site-packages/fruitfeat")]
        imported = {p.name.split(".")[0] for f in unpacked for p in f.glob("featurize/__pycache__/*.pyc")}
        logs = "".join(log for d in ours for log in _logs(d))
        for directory in ours:
            shutil.rmtree(directory, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1500:]
    assert unpacked and "Unpacking an archive" in logs

    latest = json.loads((output / "_LATEST").read_text())
    manifest = json.loads((output / "runs" / latest["run_id"] / "manifest.json").read_text())
    assert manifest["counts"]["featurized"] == len(sample_dataset.files)
    assert manifest["spark"]["master"] == "local-cluster[1,1,1024]"
    # The executor's Python workers (./environment/bin/python) imported the featurizing code from the
    # unpacked archive: the only fruitfeat they can see, and one that had no .pyc before this run.
    assert {"udf", "model"} <= imported


def _logs(app_dir: Path) -> list[str]:
    return [log.read_text(errors="replace") for log in app_dir.glob("*/stderr")]
