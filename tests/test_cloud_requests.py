"""fruitfeat.cloud.requests: the step, the cluster request and the artefact keys, built without AWS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fruitfeat.cloud import requests
from fruitfeat.config import config_from_dict
from fruitfeat.errors import EmrError

from .fake_aws import ROOT, cluster_request, spark_defaults


def test_cluster_configurations_hold_the_job_settings() -> None:
    configurations = requests.load_configurations()
    spark = spark_defaults(configurations)
    assert spark["spark.sql.execution.arrow.pyspark.enabled"] == "true"
    assert spark["spark.sql.execution.arrow.maxRecordsPerBatch"] == "64"
    assert spark["spark.sql.files.openCostInBytes"] == "65536"
    assert spark["spark.python.worker.reuse"] == "true"
    assert spark["spark.executor.memoryOverhead"] == "3g"
    assert spark["spark.dynamicAllocation.enabled"] == "true"
    # PySpark turns spark.executor.pyspark.memory into RLIMIT_AS per worker (address space, not resident
    # memory): the Python workers are budgeted in memoryOverhead instead, which YARN enforces (docs/emr.md).
    assert "spark.executor.pyspark.memory" not in spark
    (spark_env,) = [c for c in configurations if c["Classification"] == "spark-env"]
    (export,) = spark_env["Configurations"]
    assert export == {"Classification": "export", "Properties": {"PYSPARK_PYTHON": "./environment/bin/python"}}
    assert all(isinstance(v, str) for c in configurations for v in c.get("Properties", {}).values())


def test_templates_are_read_from_the_package_not_from_deploy() -> None:
    templates = ROOT / "fruitfeat" / "cloud" / "templates"
    assert requests.load_configurations() == json.loads((templates / "configurations.json").read_text())
    assert requests.load_template("step.json") == json.loads((templates / "step.json").read_text())
    assert not (ROOT / "deploy" / "emr" / "step.json").exists()  # one place: no second copy to drift


def test_cluster_settings_agree_with_the_emr_job_profile() -> None:
    job = yaml.safe_load((ROOT / "conf" / "emr.yaml").read_text(encoding="utf-8"))
    spark = spark_defaults(requests.load_configurations())
    assert spark["spark.sql.execution.arrow.maxRecordsPerBatch"] == str(job["featurize"]["arrow_batch_size"])
    assert spark["spark.sql.files.openCostInBytes"] == str(job["spark"]["files_open_cost_bytes"])


def test_emr_job_profile_does_not_limit_python_address_space() -> None:
    job = yaml.safe_load((ROOT / "conf" / "emr.yaml").read_text(encoding="utf-8"))
    conf = job["spark"].get("conf") or {}
    assert "spark.executor.pyspark.memory" not in conf
    assert (
        conf.get("spark.executor.memoryOverhead", "3g")
        == spark_defaults(requests.load_configurations())["spark.executor.memoryOverhead"]
    )


def _gib(size: str) -> float:
    return float(size[:-1]) / (1024 if size.endswith("m") else 1)


def test_executor_memory_packs_two_executors_per_xlarge_node() -> None:
    """2 cores each, two per m6i.xlarge (12 GiB for YARN): one task slot per vCPU, none idle or doubled."""
    job = yaml.safe_load((ROOT / "conf" / "emr.yaml").read_text(encoding="utf-8"))
    spark = {**spark_defaults(requests.load_configurations()), **(job["spark"].get("conf") or {})}
    container = _gib(spark["spark.executor.memory"]) + _gib(spark["spark.executor.memoryOverhead"])
    assert spark["spark.executor.cores"] == "2"
    assert int(12 // container) == 2, container
    assert _gib(spark["spark.executor.memoryOverhead"]) >= 3  # two workers, JVM native memory, Arrow batches


def test_step_fills_every_placeholder() -> None:
    step = requests.build_step("s3://bucket/emr/", "conf/emr.yaml", job_args=["--set", "pca.k=20"])
    text = json.dumps(step)
    assert "${" not in text
    args = step["HadoopJarStep"]["Args"]
    assert step["Name"] == "fruitfeat"
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    assert step["ActionOnFailure"] == "TERMINATE_CLUSTER"
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
    assert args[args.index("--name") + 1] == "fruitfeat"
    assert args[args.index("--archives") + 1] == "s3://bucket/emr/fruitfeat-env.tar.gz#environment"
    assert args[args.index("--files") + 1] == "s3://bucket/emr/conf/emr.yaml"
    assert "spark.yarn.appMasterEnv.PYSPARK_PYTHON=./environment/bin/python" in args
    assert "spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python" in args
    assert args[-5:] == ["s3://bucket/emr/jobs/run_pipeline.py", "--config", "emr.yaml", "--set", "pca.k=20"]


def test_step_reads_exactly_the_keys_upload_writes(tmp_path: Path) -> None:
    keys = requests.artifact_keys(
        env_archive=tmp_path / "fruitfeat-env.tar.gz",
        wheel=tmp_path / "fruitfeat-0.1.0-py3-none-any.whl",
        config=tmp_path / "my-run.yaml",
        entry=tmp_path / "entry.py",
    )
    assert sorted(keys.values()) == [
        "conf/my-run.yaml",
        "fruitfeat-0.1.0-py3-none-any.whl",
        "fruitfeat-env.tar.gz",
        "jobs/run_pipeline.py",
    ]
    args = requests.build_step("s3://b/emr", keys[tmp_path / "my-run.yaml"])["HadoopJarStep"]["Args"]
    read = {arg.split("#")[0].removeprefix("s3://b/emr/") for arg in args if arg.startswith("s3://")}
    assert read == set(keys.values()) - {"fruitfeat-0.1.0-py3-none-any.whl"}  # the wheel is kept for the record
    assert args[-2:] == ["--config", "my-run.yaml"]


def test_step_refuses_a_non_s3_artifacts_location() -> None:
    with pytest.raises(EmrError, match="s3://"):
        requests.build_step("/tmp/artifacts")


def test_s3_uri_joins_parts_with_single_slashes() -> None:
    assert requests.s3_uri("b", "/emr/", "conf/emr.yaml") == "s3://b/emr/conf/emr.yaml"
    assert requests.s3_uri("b", "", "/") == "s3://b"


def test_config_buckets_names_the_s3_buckets_only() -> None:
    config = config_from_dict(
        {
            "input": {"path": "s3a://in-bucket/photos/"},
            "output": {"path": "/tmp/out"},
            "model": {"weights": "s3://weights-bucket/w.weights.h5"},
        }
    )
    assert requests.config_buckets(config) == {"in-bucket", "weights-bucket"}


def test_cluster_request_is_transient_emr7_and_single_step() -> None:
    step = requests.build_step("s3://bucket/emr")
    request = cluster_request(step)
    assert request["ReleaseLabel"] == "emr-7.12.0"
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is False
    assert request["AutoTerminationPolicy"] == {"IdleTimeout": 3600}
    assert request["StepConcurrencyLevel"] == 1
    assert request["Steps"] == [step]
    assert request["Applications"] == [{"Name": "Spark"}]
    groups = {g["InstanceRole"]: g for g in request["Instances"]["InstanceGroups"]}
    assert (groups["MASTER"]["InstanceCount"], groups["CORE"]["InstanceCount"]) == (1, 2)
    assert "Ec2SubnetId" not in request["Instances"]
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags["data-classification"] == "personal" and tags["project"] == "fruitfeat"


def test_cluster_request_refuses_what_fruitfeat_does_not_run_on() -> None:
    roles = {"step": {}, "service_role": "s", "instance_profile": "i", "security_configuration": "c"}
    with pytest.raises(EmrError, match="EMR 7"):
        requests.build_cluster_request(log_uri="s3://l/", release_label="emr-6.15.0", **roles)
    with pytest.raises(EmrError, match="log URI"):
        requests.build_cluster_request(log_uri="/var/log/emr", **roles)
    with pytest.raises(EmrError, match="at least 1"):
        requests.build_cluster_request(log_uri="s3://l/", core_instance_count=0, **roles)
