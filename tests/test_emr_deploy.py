"""EMR deployment: the CloudFormation template, the EMR JSON files and fruitfeat.cloud.emr against moto (no Spark, no AWS).

moto stands in for S3, KMS, EMR and CloudFormation in-process; assertions read back what the
calls actually created (object encryption, the cluster and step EMR recorded), not just "no error".
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

boto3 = pytest.importorskip("boto3", reason="boto3 is needed by fruitfeat.cloud.emr: pip install boto3")
pytest.importorskip("moto", reason="moto is a test dependency: pip install 'moto[s3,cloudformation]'")
from botocore.stub import Stubber  # noqa: E402
from moto import mock_aws  # noqa: E402

from fruitfeat.cloud import emr  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "emr"
TEMPLATE = DEPLOY / "cloudformation.yaml"
REGION = "eu-west-1"
FAKE_SECRET = "fruitfeat-test-secret-not-a-real-key"
FAKE_TOKEN = "fruitfeat-test-session-token"


# ------------------------------------------------------------------ helpers


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation short tags (!Ref, !Sub, !GetAtt, ...) as their long forms."""


def _cfn_tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def _statements(policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in policy["Statement"]}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Fake credentials only, and no shared config/credentials file can leak in."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


def _bucket(name: str, region: str = REGION) -> str:
    s3 = boto3.client("s3", region_name=region)
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    return name


def _step(cluster_id: str, step_id: str) -> dict[str, Any]:
    return boto3.client("emr", region_name=REGION).describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]


def _spark_defaults(configurations: list[dict[str, Any]]) -> dict[str, str]:
    (spark_defaults,) = [c for c in configurations if c["Classification"] == "spark-defaults"]
    return spark_defaults["Properties"]


def _request(step: dict[str, Any]) -> dict[str, Any]:
    return emr.build_cluster_request(
        step=step,
        log_uri="s3://logs-bucket/emr-logs/",
        service_role="fruitfeat-emr-service-eu-west-1",
        instance_profile="fruitfeat-emr-ec2-eu-west-1",
        security_configuration="fruitfeat-security",
    )


# ------------------------------------------------------------------ CloudFormation template


def test_cfn_lint_passes_without_errors_or_warnings() -> None:
    if importlib.util.find_spec("cfnlint") is None:
        pytest.skip("cfn-lint is not installed in this interpreter (pip install cfn-lint); CI installs it")
    runner = "import sys; from cfnlint.runner import main; sys.argv[0] = 'cfn-lint'; sys.exit(main())"
    result = subprocess.run(
        [sys.executable, "-c", runner, str(TEMPLATE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_template_refuses_regions_outside_the_eu(template: dict[str, Any]) -> None:
    (assertion,) = template["Rules"]["EuRegionsOnly"]["Assertions"]
    regions, region_ref = assertion["Assert"]["Fn::Contains"]
    assert region_ref == {"Ref": "AWS::Region"}
    assert tuple(regions) == emr.EU_REGIONS
    assert "EU" in assertion["AssertDescription"]


def test_buckets_block_all_public_access(template: dict[str, Any]) -> None:
    buckets = _resources(template, "AWS::S3::Bucket")
    assert set(buckets) == {"DataBucket", "LogBucket"}
    for name, bucket in buckets.items():
        bpa = bucket["Properties"]["PublicAccessBlockConfiguration"]
        assert bpa == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, name
        assert bucket["Properties"]["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_data_bucket_uses_sse_kms_with_a_rotated_customer_key(template: dict[str, Any]) -> None:
    props = template["Resources"]["DataBucket"]["Properties"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": ["DataKey", "Arn"]},
    }
    assert rule["BucketKeyEnabled"] is True
    assert template["Resources"]["DataKey"]["Properties"]["EnableKeyRotation"] is True
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "LogBucket"}
    log_rule = template["Resources"]["LogBucket"]["Properties"]["BucketEncryption"]
    assert log_rule["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"]


def test_data_bucket_policy_denies_plain_http_and_non_kms_uploads(template: dict[str, Any]) -> None:
    policy = template["Resources"]["DataBucketPolicy"]["Properties"]["PolicyDocument"]
    statements = _statements(policy)
    tls = statements["DenyInsecureTransport"]
    assert tls["Effect"] == "Deny" and tls["Principal"] == "*" and tls["Action"] == "s3:*"
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert {"Fn::GetAtt": ["DataBucket", "Arn"]} in tls["Resource"]
    sse = statements["DenyUnencryptedObjectUploads"]
    assert sse["Effect"] == "Deny" and sse["Action"] == "s3:PutObject"
    assert sse["Condition"]["StringNotEquals"] == {"s3:x-amz-server-side-encryption": "aws:kms"}
    other_key = statements["DenyOtherKmsKeys"]["Condition"]["StringNotEquals"]
    assert other_key == {"s3:x-amz-server-side-encryption-aws-kms-key-id": {"Fn::GetAtt": ["DataKey", "Arn"]}}
    log_tls = _statements(template["Resources"]["LogBucketPolicy"]["Properties"]["PolicyDocument"])
    assert log_tls["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_lifecycle_expires_runs_and_aborts_incomplete_uploads(template: dict[str, Any]) -> None:
    rules = {r["Id"]: r for r in template["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireRuns"]["Prefix"] == {"Fn::Sub": "${OutputPrefix}/runs/"}
    assert rules["ExpireRuns"]["ExpirationInDays"] == {"Ref": "RunsRetentionDays"}
    assert rules["AbortIncompleteMultipartUploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    noncurrent = rules["EraseNoncurrentVersions"]["NoncurrentVersionExpiration"]
    assert noncurrent == {"NoncurrentDays": {"Ref": "NoncurrentVersionRetentionDays"}}
    assert all(r["Status"] == "Enabled" for r in rules.values())
    log_rules = template["Resources"]["LogBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert {"DaysAfterInitiation": 7} in [r.get("AbortIncompleteMultipartUpload") for r in log_rules]
    assert {"Ref": "LogRetentionDays"} in [r.get("ExpirationInDays") for r in log_rules]


def test_cluster_node_role_is_least_privilege(template: dict[str, Any]) -> None:
    role = template["Resources"]["EmrInstanceRole"]["Properties"]
    assert "ManagedPolicyArns" not in role  # no AmazonElasticMapReduceforEC2Role (s3:*, dynamodb:*, ...)
    (policy,) = role["Policies"]
    statements = _statements(policy["PolicyDocument"])
    for sid, statement in statements.items():
        assert statement["Effect"] == "Allow", sid
        for action in _as_list(statement["Action"]):
            assert "*" not in action, f"{sid}: wildcard action {action}"
        for resource in _as_list(statement["Resource"]):
            assert resource != "*", f"{sid}: all resources"
            assert json.dumps(resource).count("Bucket") + json.dumps(resource).count("DataKey") >= 1, sid
    writes = statements["WriteOnlyTheOutputPrefix"]
    assert {"s3:PutObject", "s3:DeleteObject"} <= set(writes["Action"])
    assert all("${OutputPrefix}" in r["Fn::Sub"] for r in writes["Resource"])
    assert set(statements["UseTheDataKey"]["Action"]) == {
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "kms:DescribeKey",
    }
    profile = template["Resources"]["EmrInstanceProfile"]["Properties"]
    assert profile["InstanceProfileName"] == {"Ref": "EmrInstanceRole"}  # EMR requires equal names
    service = template["Resources"]["EmrServiceRole"]["Properties"]
    assert service["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"}
    ]


def test_security_configuration_resource_matches_the_json_file(template: dict[str, Any]) -> None:
    in_template = template["Resources"]["EmrSecurityConfiguration"]["Properties"]["SecurityConfiguration"]
    text = (DEPLOY / "security-configuration.json").read_text(encoding="utf-8")
    placeholders = set(re.findall(r"\$\{([A-Z0-9_]+)\}", text))
    assert placeholders == {"KMS_KEY_ARN", "TLS_CERTIFICATES_S3_URI"}
    refs = {
        '"${KMS_KEY_ARN}"': json.dumps({"Fn::GetAtt": ["DataKey", "Arn"]}),
        '"${TLS_CERTIFICATES_S3_URI}"': json.dumps({"Fn::Sub": "s3://${DataBucket}/${TlsCertificatesKey}"}),
    }
    for placeholder, ref in refs.items():
        text = text.replace(placeholder, ref)
    assert json.loads(text) == in_template


def test_outputs_name_everything_a_submission_needs(template: dict[str, Any]) -> None:
    assert set(emr.STACK_OUTPUTS) <= set(template["Outputs"])
    assert {"LogBucketName", "EmrInstanceRoleName"} <= set(template["Outputs"])


# ------------------------------------------------------------------ EMR JSON files


def test_security_configuration_encrypts_everything_and_requires_imdsv2() -> None:
    config = json.loads((DEPLOY / "security-configuration.json").read_text(encoding="utf-8"))
    encryption = config["EncryptionConfiguration"]
    assert encryption["EnableAtRestEncryption"] is True
    assert encryption["EnableInTransitEncryption"] is True
    at_rest = encryption["AtRestEncryptionConfiguration"]
    assert at_rest["S3EncryptionConfiguration"] == {"EncryptionMode": "SSE-KMS", "AwsKmsKey": "${KMS_KEY_ARN}"}
    assert at_rest["LocalDiskEncryptionConfiguration"] == {
        "EncryptionKeyProviderType": "AwsKms",
        "AwsKmsKey": "${KMS_KEY_ARN}",
        "EnableEbsEncryption": True,
    }
    tls = encryption["InTransitEncryptionConfiguration"]["TLSCertificateConfiguration"]
    assert tls["CertificateProviderType"] == "PEM"
    assert config["InstanceMetadataServiceConfiguration"] == {
        "MinimumInstanceMetadataServiceVersion": 2,
        "HttpPutResponseHopLimit": 1,
    }


def test_cluster_configurations_hold_the_job_settings() -> None:
    configurations = emr.load_configurations()
    spark = _spark_defaults(configurations)
    assert spark["spark.sql.execution.arrow.pyspark.enabled"] == "true"
    assert spark["spark.sql.execution.arrow.maxRecordsPerBatch"] == "64"
    assert spark["spark.sql.files.openCostInBytes"] == "65536"
    assert spark["spark.python.worker.reuse"] == "true"
    assert spark["spark.executor.memoryOverhead"] == "4g"
    assert spark["spark.dynamicAllocation.enabled"] == "true"
    # PySpark turns spark.executor.pyspark.memory into RLIMIT_AS per worker; TensorFlow reserves ~3-4 GB of
    # address space, so a worker crashes under e.g. 2g. Python memory is budgeted in memoryOverhead instead.
    assert "spark.executor.pyspark.memory" not in spark
    (spark_env,) = [c for c in configurations if c["Classification"] == "spark-env"]
    (export,) = spark_env["Configurations"]
    assert export == {"Classification": "export", "Properties": {"PYSPARK_PYTHON": "./environment/bin/python"}}
    assert all(isinstance(v, str) for c in configurations for v in c.get("Properties", {}).values())


def test_cluster_settings_agree_with_the_emr_job_profile() -> None:
    job = yaml.safe_load((ROOT / "conf" / "emr.yaml").read_text(encoding="utf-8"))
    spark = _spark_defaults(emr.load_configurations())
    assert spark["spark.sql.execution.arrow.maxRecordsPerBatch"] == str(job["featurize"]["arrow_batch_size"])
    assert spark["spark.sql.files.openCostInBytes"] == str(job["spark"]["files_open_cost_bytes"])


def test_emr_job_profile_does_not_limit_python_address_space() -> None:
    job = yaml.safe_load((ROOT / "conf" / "emr.yaml").read_text(encoding="utf-8"))
    conf = job["spark"].get("conf") or {}
    assert "spark.executor.pyspark.memory" not in conf
    assert (
        conf.get("spark.executor.memoryOverhead", "4g")
        == _spark_defaults(emr.load_configurations())["spark.executor.memoryOverhead"]
    )


def test_step_fills_every_placeholder() -> None:
    step = emr.build_step("s3://bucket/emr/", "conf/emr.yaml", job_args=["--set", "pca.k=20"])
    text = json.dumps(step)
    assert "${" not in text
    args = step["HadoopJarStep"]["Args"]
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    assert step["ActionOnFailure"] == "TERMINATE_CLUSTER"
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
    assert args[args.index("--archives") + 1] == "s3://bucket/emr/fruitfeat-env.tar.gz#environment"
    assert args[args.index("--files") + 1] == "s3://bucket/emr/conf/emr.yaml"
    assert "spark.yarn.appMasterEnv.PYSPARK_PYTHON=./environment/bin/python" in args
    assert "spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python" in args
    assert args[-5:] == ["s3://bucket/emr/jobs/run_pipeline.py", "--config", "emr.yaml", "--set", "pca.k=20"]


def test_step_refuses_a_non_s3_artifacts_location() -> None:
    with pytest.raises(emr.EmrError, match="s3://"):
        emr.build_step("/tmp/artifacts")


def test_cluster_request_is_transient_emr7_and_single_step() -> None:
    request = _request(emr.build_step("s3://bucket/emr"))
    assert request["ReleaseLabel"].startswith("emr-7.")
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is False
    assert request["AutoTerminationPolicy"] == {"IdleTimeout": 3600}
    assert request["StepConcurrencyLevel"] == 1
    assert request["Applications"] == [{"Name": "Spark"}]
    with pytest.raises(emr.EmrError, match="EMR 7"):
        emr.build_cluster_request(
            step={}, log_uri="s3://l/", service_role="s", instance_profile="i", security_configuration="c",
            release_label="emr-6.15.0",
        )  # fmt: skip


# ------------------------------------------------------------------ region guard


def test_check_region_refuses_us_east_1_and_accepts_eu_west_3() -> None:
    with pytest.raises(emr.RegionError, match="us-east-1.*EU"):
        emr.check_region("us-east-1")
    with pytest.raises(emr.RegionError):
        emr.check_region(None)
    assert emr.check_region("eu-west-3") == "eu-west-3"


def test_check_bucket_region_refuses_a_us_bucket(aws_env: None) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    assert emr.check_bucket_region(s3, _bucket("fruitfeat-eu")) == REGION
    with pytest.raises(emr.RegionError, match="outside the EU"):
        emr.check_bucket_region(s3, _bucket("fruitfeat-us", "us-east-1"))


# ------------------------------------------------------------------ against moto


def test_upload_artifacts_encrypts_every_object_with_the_kms_key(aws_env: None, tmp_path: Path) -> None:
    bucket = _bucket("fruitfeat-data")
    key_arn = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    archive = tmp_path / "fruitfeat-env.tar.gz"
    archive.write_bytes(b"\x1f\x8b" + bytes(9 * 1024 * 1024))  # > 8 MiB: goes up as a multipart upload
    entry, config = tmp_path / "run_pipeline.py", tmp_path / "emr.yaml"
    entry.write_text("print('job')\n")
    config.write_text("profile: emr\n")
    files = {str(archive): "fruitfeat-env.tar.gz", str(entry): "jobs/run_pipeline.py", str(config): "conf/emr.yaml"}

    s3 = boto3.client("s3", region_name=REGION)
    uris = emr.upload_artifacts(s3, bucket, "emr/", files, kms_key_id=key_arn)

    assert uris == [f"s3://{bucket}/emr/{k}" for k in files.values()]
    for local, key in files.items():
        head = s3.head_object(Bucket=bucket, Key=f"emr/{key}")
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert head["SSEKMSKeyId"] == key_arn, key
        body = s3.get_object(Bucket=bucket, Key=f"emr/{key}")["Body"].read()
        assert body == Path(local).read_bytes()


def test_upload_checks_every_file_before_sending_any(aws_env: None, tmp_path: Path) -> None:
    bucket = _bucket("fruitfeat-data")
    present = tmp_path / "emr.yaml"
    present.write_text("profile: emr\n")
    s3 = boto3.client("s3", region_name=REGION)
    with pytest.raises(emr.EmrError, match="fruitfeat-env.tar.gz"):
        emr.upload_artifacts(s3, bucket, "emr", {present: "conf/emr.yaml", tmp_path / "fruitfeat-env.tar.gz": "x"})
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_run_job_flow_sends_the_cluster_and_step_we_built(aws_env: None) -> None:
    client = boto3.client("emr", region_name=REGION)
    sent: list[dict[str, Any]] = []
    client.meta.events.register("provide-client-params.emr.RunJobFlow", lambda params, **_: sent.append(params))
    request = _request(emr.build_step("s3://fruitfeat-data/emr", job_args=["--set", "pca.k=20"]))

    result = emr.submit(client, request)

    assert result.new_cluster and result.cluster_id.startswith("j-")
    (params,) = sent
    assert params["AutoTerminationPolicy"] == {"IdleTimeout": 3600}  # moto does not store it: check what was sent
    cluster = client.describe_cluster(ClusterId=result.cluster_id)["Cluster"]
    assert f":{REGION}:" in cluster["ClusterArn"]
    assert cluster["ReleaseLabel"] == emr.DEFAULT_RELEASE_LABEL
    assert cluster["SecurityConfiguration"] == "fruitfeat-security"
    assert cluster["LogUri"] == "s3://logs-bucket/emr-logs/"
    assert cluster["ServiceRole"] == "fruitfeat-emr-service-eu-west-1"
    assert cluster["Ec2InstanceAttributes"]["IamInstanceProfile"] == "fruitfeat-emr-ec2-eu-west-1"
    assert cluster["AutoTerminate"] is True
    assert cluster["StepConcurrencyLevel"] == 1
    assert cluster["EbsRootVolumeSize"] == 32
    assert [a["Name"] for a in cluster["Applications"]] == ["Spark"]
    assert {t["Key"]: t["Value"] for t in cluster["Tags"]}["project"] == "fruitfeat"
    spark = _spark_defaults(cluster["Configurations"])
    assert spark["spark.sql.execution.arrow.maxRecordsPerBatch"] == "64"
    assert spark["spark.executor.memoryOverhead"] == "4g"

    steps = client.list_steps(ClusterId=result.cluster_id)["Steps"]
    assert [s["Id"] for s in steps] == [result.step_id]
    step = _step(result.cluster_id, result.step_id)
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
        ReleaseLabel=emr.DEFAULT_RELEASE_LABEL,
        Instances={"MasterInstanceType": "m6i.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="profile",
        ServiceRole="service",
    )["JobFlowId"]
    step = emr.build_step("s3://fruitfeat-data/emr", action_on_failure="CONTINUE")

    result = emr.submit(client, cluster_id=cluster_id, step=step)

    assert (result.cluster_id, result.new_cluster) == (cluster_id, False)
    recorded = _step(cluster_id, result.step_id)
    assert recorded["ActionOnFailure"] == "CONTINUE"
    assert recorded["Config"]["Args"] == step["HadoopJarStep"]["Args"]
    with pytest.raises(emr.EmrError):
        emr.submit(client, _request(step), cluster_id=cluster_id, step=step)


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
        state = emr.wait_for_step(client, "j-1", "s-1", poll_seconds=5, report=reports.append, sleep=sleeps.append)
        stub.assert_no_pending_responses()
    assert state == "FAILED"
    assert sleeps == [5, 5, 5]
    assert [r.split(": ")[-1] for r in reports[:3]] == ["PENDING", "RUNNING", "FAILED"]
    assert "Spark job failed" in reports[3] and failure["LogFile"] in reports[3]


def test_wait_for_step_times_out_while_the_step_still_runs(aws_env: None) -> None:
    client = boto3.client("emr", region_name=REGION)
    result = emr.submit(client, _request(emr.build_step("s3://fruitfeat-data/emr")))
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(TimeoutError, match="RUNNING"):
        emr.wait_for_step(
            client, result.cluster_id, result.step_id, 30, 100, report=lambda _: None, sleep=sleep, clock=lambda: now[0]
        )
    assert now[0] == 120


# ------------------------------------------------------------------ CLI end to end


@pytest.fixture
def stack(aws_env: None) -> dict[str, str]:
    """The real template deployed into moto (it ignores Rules and bucket policies, not the rest)."""
    cfn = boto3.client("cloudformation", region_name=REGION)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # moto: "no CloudFormation support for BucketPolicy"
        cfn.create_stack(
            StackName="fruitfeat",
            TemplateBody=TEMPLATE.read_text(encoding="utf-8"),
            Capabilities=["CAPABILITY_NAMED_IAM"],
        )
    return emr.stack_outputs(cfn, "fruitfeat")


def _job_files(tmp_path: Path, bucket: str) -> list[str]:
    config = tmp_path / "emr.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "profile": "emr",
                "input": {"path": f"s3://{bucket}/fruits-360/"},
                "output": {"path": f"s3://{bucket}/fruitfeat/"},
                "model": {"weights": f"s3://{bucket}/weights/mobilenetv2_notop.weights.h5"},
                "s3": {"region": REGION},  # the emr profile requires an EU region
            }
        )
    )
    (tmp_path / "fruitfeat-env.tar.gz").write_bytes(b"packed venv")
    (tmp_path / "fruitfeat-0.1.0-py3-none-any.whl").write_bytes(b"wheel")
    return [
        "--config", str(config),
        "--env-archive", str(tmp_path / "fruitfeat-env.tar.gz"),
        "--wheel", str(tmp_path / "fruitfeat-0.1.0-py3-none-any.whl"),
    ]  # fmt: skip


def test_cli_upload_submit_status_end_to_end(
    stack: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    bucket = stack["DataBucketName"]
    files = _job_files(tmp_path, bucket)
    common = ["--region", REGION, "--stack", "fruitfeat", "--prefix", "emr"]

    assert emr.main(["upload", *common, *files]) == 0
    uploaded = capsys.readouterr().out.split()
    s3 = boto3.client("s3", region_name=REGION)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="emr/")["Contents"])
    assert keys == [
        "emr/conf/emr.yaml",
        "emr/fruitfeat-0.1.0-py3-none-any.whl",
        "emr/fruitfeat-env.tar.gz",
        "emr/jobs/run_pipeline.py",
    ]
    assert sorted(uploaded) == [f"s3://{bucket}/{k}" for k in keys]
    for key in keys:
        head = s3.head_object(Bucket=bucket, Key=key)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", stack["DataKeyArn"])

    assert emr.main(["submit", *common, files[0], files[1], "--set", "pca.k=20"]) == 0
    out = capsys.readouterr().out
    cluster_id, step_id = re.search(r"cluster (j-\w+)\s+step (s-\w+)", out).groups()  # type: ignore[union-attr]
    assert f"https://{REGION}.console.aws.amazon.com/emr/" in out
    client = boto3.client("emr", region_name=REGION)
    cluster = client.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert cluster["SecurityConfiguration"] == stack["SecurityConfigurationName"]
    assert cluster["ServiceRole"] == stack["EmrServiceRoleName"]
    assert cluster["Ec2InstanceAttributes"]["IamInstanceProfile"] == stack["EmrInstanceProfileName"]
    assert cluster["LogUri"] == stack["EmrLogUri"]
    described = client.describe_security_configuration(Name=cluster["SecurityConfiguration"])
    # AWS returns the document as JSON text, moto (CloudFormation path) a dict repr: YAML reads both.
    security = yaml.safe_load(described["SecurityConfiguration"])
    assert security["EncryptionConfiguration"]["AtRestEncryptionConfiguration"]["S3EncryptionConfiguration"] == {
        "EncryptionMode": "SSE-KMS",
        "AwsKmsKey": stack["DataKeyArn"],
    }
    args = _step(cluster_id, step_id)["Config"]["Args"]
    assert args[args.index("--files") + 1] == f"s3://{bucket}/emr/conf/emr.yaml"
    assert args[-4:] == ["--config", "emr.yaml", "--set", "pca.k=20"]

    assert emr.main(["submit", *common, files[0], files[1], "--cluster-id", cluster_id]) == 0
    added = re.search(r"step (s-\w+)", capsys.readouterr().out).group(1)  # type: ignore[union-attr]
    assert _step(cluster_id, added)["ActionOnFailure"] == "CONTINUE"

    assert emr.main(["status", "--region", REGION, "--cluster-id", cluster_id]) == 0
    status = capsys.readouterr().out
    assert f"cluster {cluster_id}" in status and f"step {step_id}" in status and f"step {added}" in status

    everything = status + out + caplog.text
    assert FAKE_SECRET not in everything and FAKE_TOKEN not in everything


def test_cli_refuses_non_eu_regions_and_bad_overrides_before_calling_emr(
    stack: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _job_files(tmp_path, stack["DataBucketName"])
    client = boto3.client("emr", region_name=REGION)
    before = len(client.list_clusters()["Clusters"])

    assert emr.main(["submit", "--region", "us-east-1", "--stack", "fruitfeat", *files[:2]]) == 2
    assert "not allowed" in capsys.readouterr().err

    assert emr.main(["submit", "--region", REGION, "--stack", "fruitfeat", *files[:2], "--set", "pca.k=0"]) == 2
    assert "pca.k" in capsys.readouterr().err

    assert emr.main(["submit", "--region", REGION, "--bucket", stack["DataBucketName"], *files[:2]]) == 2
    assert "--log-uri" in capsys.readouterr().err
    assert len(client.list_clusters()["Clusters"]) == before
