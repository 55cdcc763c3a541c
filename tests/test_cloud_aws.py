"""fruitfeat.cloud.aws against moto (S3, KMS, EMR in-process): what the calls created, read back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from fruitfeat.cloud import aws
from fruitfeat.cloud.requests import DEFAULT_RELEASE_LABEL, build_step
from fruitfeat.errors import EmrError, RegionError

from .fake_aws import (
    REGION,
    cluster_request,
    create_bucket,
    fake_aws,
    recorded_step,
    spark_defaults,
)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    with fake_aws(monkeypatch, tmp_path):
        yield


def test_check_bucket_region_accepts_an_eu_bucket_and_refuses_a_us_one(aws_env: None) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    assert aws.check_bucket_region(s3, create_bucket("fruitfeat-eu")) == REGION
    assert aws.check_bucket_region(s3, create_bucket("fruitfeat-frankfurt", "eu-central-1")) == "eu-central-1"
    with pytest.raises(RegionError, match="'fruitfeat-us' is in us-east-1, outside the EU"):
        aws.check_bucket_region(s3, create_bucket("fruitfeat-us", "us-east-1"))


def test_upload_artifacts_encrypts_every_object_with_the_kms_key(aws_env: None, tmp_path: Path) -> None:
    bucket = create_bucket("fruitfeat-data")
    key_arn = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    archive = tmp_path / "fruitfeat-env.tar.gz"
    archive.write_bytes(b"\x1f\x8b" + bytes(9 * 1024 * 1024))  # > 8 MiB: goes up as a multipart upload
    entry, config = tmp_path / "run_pipeline.py", tmp_path / "emr.yaml"
    entry.write_text("print('job')\n")
    config.write_text("profile: emr\n")
    files = {str(archive): "fruitfeat-env.tar.gz", str(entry): "jobs/run_pipeline.py", str(config): "conf/emr.yaml"}

    s3 = boto3.client("s3", region_name=REGION)
    uris = aws.upload_artifacts(s3, bucket, "emr/", files, kms_key_id=key_arn)

    assert uris == [f"s3://{bucket}/emr/{k}" for k in files.values()]
    for local, key in files.items():
        head = s3.head_object(Bucket=bucket, Key=f"emr/{key}")
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert head["SSEKMSKeyId"] == key_arn, key
        body = s3.get_object(Bucket=bucket, Key=f"emr/{key}")["Body"].read()
        assert body == Path(local).read_bytes()
    assert "-" in s3.head_object(Bucket=bucket, Key="emr/fruitfeat-env.tar.gz")["ETag"]  # a multipart ETag


def test_upload_checks_every_file_before_sending_any(aws_env: None, tmp_path: Path) -> None:
    bucket = create_bucket("fruitfeat-data")
    present = tmp_path / "emr.yaml"
    present.write_text("profile: emr\n")
    s3 = boto3.client("s3", region_name=REGION)
    with pytest.raises(EmrError, match="fruitfeat-env.tar.gz"):
        aws.upload_artifacts(s3, bucket, "emr", {present: "conf/emr.yaml", tmp_path / "fruitfeat-env.tar.gz": "x"})
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_run_job_flow_sends_the_cluster_and_step_we_built(aws_env: None) -> None:
    client = boto3.client("emr", region_name=REGION)
    sent: list[dict[str, Any]] = []
    client.meta.events.register("provide-client-params.emr.RunJobFlow", lambda params, **_: sent.append(params))
    request = cluster_request(build_step("s3://fruitfeat-data/emr", job_args=["--set", "pca.k=20"]))

    result = aws.submit(client, request)

    assert result.new_cluster and result.cluster_id.startswith("j-")
    (params,) = sent
    assert params["AutoTerminationPolicy"] == {"IdleTimeout": 3600}  # moto does not store it: check what was sent
    cluster = client.describe_cluster(ClusterId=result.cluster_id)["Cluster"]
    assert f":{REGION}:" in cluster["ClusterArn"]
    assert cluster["ReleaseLabel"] == DEFAULT_RELEASE_LABEL
    assert cluster["SecurityConfiguration"] == "fruitfeat-security"
    assert cluster["LogUri"] == "s3://logs-bucket/emr-logs/"
    assert cluster["ServiceRole"] == "fruitfeat-emr-service-eu-west-1"
    assert cluster["Ec2InstanceAttributes"]["IamInstanceProfile"] == "fruitfeat-emr-ec2-eu-west-1"
    assert cluster["AutoTerminate"] is True
    assert cluster["StepConcurrencyLevel"] == 1
    assert cluster["EbsRootVolumeSize"] == 32
    assert [a["Name"] for a in cluster["Applications"]] == ["Spark"]
    assert {t["Key"]: t["Value"] for t in cluster["Tags"]}["project"] == "fruitfeat"
    spark = spark_defaults(cluster["Configurations"])
    assert spark["spark.sql.execution.arrow.maxRecordsPerBatch"] == "64"
    assert spark["spark.executor.memoryOverhead"] == "3g"

    steps = client.list_steps(ClusterId=result.cluster_id)["Steps"]
    assert [s["Id"] for s in steps] == [result.step_id]
    step = recorded_step(result.cluster_id, result.step_id)
    args = step["Config"]["Args"]
    assert step["Config"]["Jar"] == "command-runner.jar"
    assert step["ActionOnFailure"] == "TERMINATE_CLUSTER"
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
    assert args[args.index("--archives") + 1] == "s3://fruitfeat-data/emr/fruitfeat-env.tar.gz#environment"
    assert args[args.index("--files") + 1] == "s3://fruitfeat-data/emr/conf/emr.yaml"
    assert args[-5:] == ["s3://fruitfeat-data/emr/jobs/run_pipeline.py", "--config", "emr.yaml", "--set", "pca.k=20"]


def test_a_step_can_be_added_to_a_running_cluster(aws_env: None) -> None:
    client = boto3.client("emr", region_name=REGION)
    cluster_id = client.run_job_flow(
        Name="long-running",
        ReleaseLabel=DEFAULT_RELEASE_LABEL,
        Instances={"MasterInstanceType": "m6i.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="profile",
        ServiceRole="service",
    )["JobFlowId"]
    step = build_step("s3://fruitfeat-data/emr", action_on_failure="CONTINUE")

    result = aws.submit(client, cluster_id=cluster_id, step=step)

    assert (result.cluster_id, result.new_cluster) == (cluster_id, False)
    recorded = recorded_step(cluster_id, result.step_id)
    assert recorded["ActionOnFailure"] == "CONTINUE"
    assert recorded["Config"]["Args"] == step["HadoopJarStep"]["Args"]
    with pytest.raises(EmrError, match="not both"):
        aws.submit(client, cluster_request(step), cluster_id=cluster_id, step=step)
    with pytest.raises(EmrError, match="needs a step"):
        aws.submit(client, cluster_id=cluster_id)
    assert len(client.list_steps(ClusterId=cluster_id)["Steps"]) == 1


def test_wait_for_step_reports_each_state_once_and_the_failure(aws_env: None) -> None:
    client = boto3.client("emr", region_name=REGION)
    failure = {"Reason": "Spark job failed", "Message": "exit 1", "LogFile": "s3://logs/emr-logs/j-1/steps/s-1/"}
    with Stubber(client) as stub:
        for state in ("PENDING", "RUNNING", "RUNNING", "FAILED"):
            status: dict[str, Any] = {"State": state}
            if state == "FAILED":
                status["FailureDetails"] = failure
            stub.add_response(
                "describe_step", {"Step": {"Id": "s-1", "Status": status}}, {"ClusterId": "j-1", "StepId": "s-1"}
            )
        reports: list[str] = []
        sleeps: list[float] = []
        state = aws.wait_for_step(client, "j-1", "s-1", poll_seconds=5, report=reports.append, sleep=sleeps.append)
        stub.assert_no_pending_responses()
    assert state == "FAILED"
    assert sleeps == [5, 5, 5]
    assert [r.split(": ")[-1] for r in reports[:3]] == ["PENDING", "RUNNING", "FAILED"]
    assert "Spark job failed" in reports[3] and failure["LogFile"] in reports[3]
    assert len(reports) == 4


def test_wait_for_step_times_out_while_the_step_still_runs(aws_env: None) -> None:
    client = boto3.client("emr", region_name=REGION)
    result = aws.submit(client, cluster_request(build_step("s3://fruitfeat-data/emr")))
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(TimeoutError, match="RUNNING"):
        aws.wait_for_step(
            client, result.cluster_id, result.step_id, 30, 100, report=lambda _: None, sleep=sleep, clock=lambda: now[0]
        )
    assert now[0] == 120
