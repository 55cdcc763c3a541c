"""deploy/emr/: the CloudFormation template and the security configuration for `aws emr` (no AWS, no Spark).

The template is read as data (CloudFormation short tags as their long forms) and checked for what
docs/emr.md and docs/gdpr.md promise: EU regions only, no public access, SSE-KMS, least privilege.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from fruitfeat.cloud.cli import STACK_OUTPUTS
from fruitfeat.config.regions import EU_REGIONS

from .fake_aws import DEPLOY_DIR, TEMPLATE


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


# ------------------------------------------------------------------ CloudFormation template


def test_cfn_lint_passes_without_errors_or_warnings() -> None:
    assert importlib.util.find_spec("cfnlint") is not None, "cfn-lint is a test dependency (pip install -e '.[test]')"
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
    assert tuple(regions) == EU_REGIONS
    assert not {"eu-west-2", "eu-central-2"} & set(regions)  # London and Zurich are outside the EU
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
    log_encryption = template["Resources"]["LogBucket"]["Properties"]["BucketEncryption"]
    (log_rule,) = log_encryption["ServerSideEncryptionConfiguration"]
    # SSE-S3: S3 server access logs cannot be delivered to an SSE-KMS bucket.
    assert log_rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


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
    text = (DEPLOY_DIR / "security-configuration.json").read_text(encoding="utf-8")
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
    assert set(STACK_OUTPUTS) <= set(template["Outputs"])
    assert {"LogBucketName", "EmrInstanceRoleName"} <= set(template["Outputs"])


# ------------------------------------------------------------------ security configuration


def test_security_configuration_encrypts_everything_and_requires_imdsv2() -> None:
    config = json.loads((DEPLOY_DIR / "security-configuration.json").read_text(encoding="utf-8"))
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
