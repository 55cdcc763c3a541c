"""python -m fruitfeat.cloud.cli: upload, submit and status end to end against the real template in moto."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml

from fruitfeat.cloud import aws, cli

from .fake_aws import (
    FAKE_SECRET,
    FAKE_TOKEN,
    REGION,
    TEMPLATE,
    create_bucket,
    fake_aws,
    recorded_step,
)

WHEEL_NAME = "fruitfeat-0.1.0-py3-none-any.whl"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    with fake_aws(monkeypatch, tmp_path):
        yield


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
    return aws.stack_outputs(cfn, "fruitfeat")


def _checkout(root: Path, bucket: str) -> Path:
    """The files `make emr-package` leaves in a checkout, at the paths the CLI defaults to."""
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "emr.yaml").write_text(
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
    (root / "dist").mkdir()
    (root / "dist" / WHEEL_NAME).write_bytes(b"wheel")
    (root / "dist" / "fruitfeat-env.tar.gz").write_bytes(b"packed venv")
    (root / "jobs").mkdir()
    (root / "jobs" / "run_pipeline.py").write_text("print('entry')\n")
    return root


def test_cli_upload_submit_status_end_to_end(
    stack: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bucket = stack["DataBucketName"]
    monkeypatch.chdir(_checkout(tmp_path / "checkout", bucket))  # make runs the CLI from the repository root
    common = ["--region", REGION, "--stack", "fruitfeat", "--prefix", "emr"]
    printed = []

    assert cli.main(["upload", *common]) == 0
    captured = capsys.readouterr()
    printed.append(captured.out + captured.err)
    s3 = boto3.client("s3", region_name=REGION)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="emr/")["Contents"])
    assert keys == ["emr/conf/emr.yaml", f"emr/{WHEEL_NAME}", "emr/fruitfeat-env.tar.gz", "emr/jobs/run_pipeline.py"]
    assert sorted(captured.out.split()) == [f"s3://{bucket}/{k}" for k in keys]
    body = s3.get_object(Bucket=bucket, Key="emr/jobs/run_pipeline.py")["Body"].read()
    assert body == b"print('entry')\n"  # the entry script of the current directory, not of the package
    for key in keys:
        head = s3.head_object(Bucket=bucket, Key=key)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", stack["DataKeyArn"])

    assert cli.main(["submit", *common, "--set", "pca.k=20"]) == 0
    captured = capsys.readouterr()
    printed.append(captured.out + captured.err)
    submitted = re.search(r"cluster (j-\w+)\s+step (s-\w+)", captured.out)
    assert submitted, captured.out
    cluster_id, step_id = submitted.groups()
    console = f"https://{REGION}.console.aws.amazon.com/emr/home?region={REGION}#/clusterDetails/{cluster_id}"
    assert console in captured.out.splitlines()
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
    args = recorded_step(cluster_id, step_id)["Config"]["Args"]
    assert args[args.index("--files") + 1] == f"s3://{bucket}/emr/conf/emr.yaml"
    assert args[-4:] == ["--config", "emr.yaml", "--set", "pca.k=20"]

    assert cli.main(["submit", *common, "--cluster-id", cluster_id]) == 0
    captured = capsys.readouterr()
    printed.append(captured.out + captured.err)
    added = re.search(r"step (s-\w+)", captured.out).group(1)  # type: ignore[union-attr]
    assert "added to running cluster" in captured.out
    assert recorded_step(cluster_id, added)["ActionOnFailure"] == "CONTINUE"

    assert cli.main(["status", "--region", REGION, "--cluster-id", cluster_id]) == 0
    captured = capsys.readouterr()
    printed.append(captured.out + captured.err)
    assert captured.out.splitlines()[0].startswith(f"cluster {cluster_id} 'fruitfeat': ")
    assert f"step {step_id} 'fruitfeat'" in captured.out and f"step {added} 'fruitfeat'" in captured.out

    everything = "".join(printed) + caplog.text
    assert "uploading dist/fruitfeat-env.tar.gz" in caplog.text  # the log is part of what is checked
    assert FAKE_SECRET not in everything and FAKE_TOKEN not in everything


def test_cli_refuses_non_eu_regions_missing_options_and_bad_overrides_before_calling_emr(
    stack: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(_checkout(tmp_path / "checkout", stack["DataBucketName"]))
    client = boto3.client("emr", region_name=REGION)

    with pytest.raises(SystemExit) as usage:  # a usage error, before any AWS client exists
        cli.main(["submit", "--region", "us-east-1", "--stack", "fruitfeat"])
    assert usage.value.code == 2
    assert "argument --region: region 'us-east-1' is not allowed" in capsys.readouterr().err

    with pytest.raises(SystemExit) as usage:
        cli.main(["submit", "--region", REGION, "--bucket", stack["DataBucketName"]])
    assert usage.value.code == 2
    assert "submit needs --log-uri, --service-role, --instance-profile, --security-configuration" in (
        capsys.readouterr().err
    )

    assert cli.main(["submit", "--region", REGION, "--stack", "fruitfeat", "--set", "pca.k=0"]) == 2  # ConfigError
    err = capsys.readouterr().err
    assert err.startswith("fruitfeat: error: ") and "pca.k" in err
    assert client.list_clusters()["Clusters"] == []


def test_cli_refuses_a_bucket_outside_the_eu(stack: dict[str, str], tmp_path: Path, monkeypatch, capsys) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="fruitfeat-us")
    monkeypatch.chdir(_checkout(tmp_path / "checkout", "fruitfeat-us"))
    assert cli.main(["upload", "--region", REGION, "--stack", "fruitfeat"]) == 1  # RegionError.exit_code
    assert capsys.readouterr().err == (
        "fruitfeat: error: bucket 'fruitfeat-us' is in us-east-1, outside the EU: choose an EU bucket\n"
    )
    assert "Contents" not in boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=stack["DataBucketName"])


@pytest.mark.parametrize("region", ["eu-west-2", "eu-central-2"])  # London, Zurich: in Europe, not in the EU
def test_cli_refuses_london_and_zurich_as_region_and_as_bucket_location(
    stack: dict[str, str], tmp_path: Path, monkeypatch, capsys, region: str
) -> None:
    with pytest.raises(SystemExit) as usage:  # a usage error, before any AWS client exists
        cli.main(["upload", "--region", region, "--stack", "fruitfeat"])
    assert usage.value.code == 2
    assert f"argument --region: region '{region}' is not allowed" in capsys.readouterr().err

    bucket = create_bucket(f"fruitfeat-{region}", region)
    monkeypatch.chdir(_checkout(tmp_path / "checkout", bucket))
    assert cli.main(["upload", "--region", REGION, "--stack", "fruitfeat"]) == 1  # RegionError.exit_code
    assert capsys.readouterr().err == (
        f"fruitfeat: error: bucket '{bucket}' is in {region}, outside the EU: choose an EU bucket\n"
    )
    assert "Contents" not in boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=stack["DataBucketName"])


@pytest.mark.parametrize(
    ("option", "default"),
    [
        ("--config", "conf/emr.yaml"),
        ("--env-archive", "dist/fruitfeat-env.tar.gz"),
        ("--wheel", f"dist/{WHEEL_NAME}"),
        ("--entry", "jobs/run_pipeline.py"),
    ],
)
def test_upload_names_the_option_of_a_missing_file(
    stack: dict[str, str], tmp_path: Path, monkeypatch, capsys, option: str, default: str
) -> None:
    checkout = _checkout(tmp_path / "checkout", stack["DataBucketName"])
    (checkout / default).unlink()
    monkeypatch.chdir(checkout)
    assert cli.main(["upload", "--region", REGION, "--stack", "fruitfeat"]) == 1  # EmrError.exit_code
    err = capsys.readouterr().err
    assert err.startswith(f"fruitfeat: error: {option} {default}: no such file (relative to {checkout})")
    assert err.rstrip().endswith(f"or pass {option} PATH")
    assert "Contents" not in boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=stack["DataBucketName"])


def test_no_credentials_is_one_line_not_a_traceback(tmp_path: Path, monkeypatch, capsys) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance profile lookup: no network at all
    monkeypatch.chdir(_checkout(tmp_path / "checkout", "fruitfeat-data"))
    assert cli.main(["upload", "--region", REGION, "--bucket", "fruitfeat-data"]) == 1
    assert capsys.readouterr().err.startswith("fruitfeat: error: no AWS credentials: use AWS_PROFILE")


def test_the_module_runs_as_a_script_from_outside_the_checkout(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-m", "fruitfeat.cloud.cli", "submit", "--help"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m fruitfeat.cloud.cli submit ")
    assert "--cluster-id" in result.stdout and "--set KEY=VALUE" in result.stdout
