"""What the fruitfeat.cloud tests share: a moto account with fake credentials only, and small readers of it.

moto stands in for S3, KMS, EMR and CloudFormation in-process; the tests read back what the calls
created (object encryption, the cluster and step EMR recorded), not just "no error".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from fruitfeat.cloud.requests import build_cluster_request

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DIR = ROOT / "deploy" / "emr"
TEMPLATE = DEPLOY_DIR / "cloudformation.yaml"
REGION = "eu-west-1"
FAKE_SECRET = "fruitfeat-test-secret-not-a-real-key"
FAKE_TOKEN = "fruitfeat-test-session-token"


@contextmanager
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """moto with fake credentials only: no shared config or credentials file, no profile can leak in."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


def create_bucket(name: str, region: str = REGION) -> str:
    s3 = boto3.client("s3", region_name=region)
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    return name


def recorded_step(cluster_id: str, step_id: str) -> dict[str, Any]:
    """The step as EMR (moto) recorded it."""
    return boto3.client("emr", region_name=REGION).describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]


def spark_defaults(configurations: list[dict[str, Any]]) -> dict[str, str]:
    (defaults,) = [c for c in configurations if c["Classification"] == "spark-defaults"]
    return defaults["Properties"]


def cluster_request(step: dict[str, Any]) -> dict[str, Any]:
    """A cluster request with the roles and names the stack would give."""
    return build_cluster_request(
        step=step,
        log_uri="s3://logs-bucket/emr-logs/",
        service_role="fruitfeat-emr-service-eu-west-1",
        instance_profile="fruitfeat-emr-ec2-eu-west-1",
        security_configuration="fruitfeat-security",
    )
