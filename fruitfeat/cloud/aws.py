"""The calls to AWS, through boto3 clients the caller makes: bucket region, upload, submit, wait, stack outputs.

Each function takes its client as an argument, so the caller owns the session (region, credentials
from the standard chain only) and tests can pass moto's or a stubbed one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fruitfeat.cloud.requests import s3_uri
from fruitfeat.config.regions import check_region
from fruitfeat.errors import EmrError, RegionError

if TYPE_CHECKING:
    from botocore.client import BaseClient

log = logging.getLogger(__name__)

TERMINAL_STEP_STATES = frozenset({"COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED"})
SSE_KMS = "aws:kms"


def check_bucket_region(s3_client: BaseClient, bucket: str) -> str:
    """The bucket's region, refused unless it is in the EU (a bucket name says nothing about where it lives)."""
    location = s3_client.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
    if location == "EU":  # legacy alias of eu-west-1
        location = "eu-west-1"
    try:
        return check_region(location)
    except RegionError:
        raise RegionError(f"bucket {bucket!r} is in {location}, outside the EU: choose an EU bucket") from None


def upload_artifacts(
    s3_client: BaseClient,
    bucket: str,
    prefix: str,
    files: Mapping[str, str] | Mapping[Path, str],
    kms_key_id: str | None = None,
) -> list[str]:
    """Upload ``local path -> key`` (keys relative to ``prefix``) with SSE-KMS; returns the S3 URIs.

    Every file is checked before the first byte is sent, so a missing archive does not leave a
    half-updated prefix. Large files go up in parts (boto3's transfer manager), each encrypted.
    """
    paths = {Path(local): key for local, key in files.items()}
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise EmrError(f"missing artifact(s): {', '.join(missing)} (see docs/emr.md, 'Build the artifacts')")
    extra: dict[str, str] = {"ServerSideEncryption": SSE_KMS}
    if kms_key_id:
        extra["SSEKMSKeyId"] = kms_key_id
    uris = []
    for path, key in paths.items():
        full_key = "/".join(part.strip("/") for part in (prefix, key) if part.strip("/"))
        log.info("uploading %s (%.1f MB) to s3://%s/%s", path, path.stat().st_size / 1e6, bucket, full_key)
        s3_client.upload_file(str(path), bucket, full_key, ExtraArgs=dict(extra))
        uris.append(s3_uri(bucket, full_key))
    return uris


@dataclass(frozen=True)
class Submission:
    """Where the job went: the cluster, its step, and whether the cluster was started for it."""

    cluster_id: str
    step_id: str
    new_cluster: bool


def submit(
    emr_client: BaseClient,
    request: Mapping[str, Any] | None = None,
    *,
    cluster_id: str | None = None,
    step: Mapping[str, Any] | None = None,
) -> Submission:
    """Start a cluster from ``request``, or add ``step`` to the running ``cluster_id``."""
    if (request is None) == (cluster_id is None):
        raise EmrError("give either a cluster request or a cluster id with a step, not both")
    if request is not None:
        new_id = emr_client.run_job_flow(**request)["JobFlowId"]
        steps = emr_client.list_steps(ClusterId=new_id)["Steps"]
        if not steps:
            raise EmrError(f"cluster {new_id} was created without its step")
        return Submission(new_id, steps[-1]["Id"], new_cluster=True)  # list_steps is newest first
    if step is None:
        raise EmrError("adding to an existing cluster needs a step")
    step_ids = emr_client.add_job_flow_steps(JobFlowId=cluster_id, Steps=[dict(step)])["StepIds"]
    return Submission(str(cluster_id), step_ids[0], new_cluster=False)


def wait_for_step(
    emr_client: BaseClient,
    cluster_id: str,
    step_id: str,
    poll_seconds: float = 30.0,
    timeout: float = 6 * 3600.0,
    *,
    report: Callable[[str], None] = log.info,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Poll the step until it ends; returns its final state (COMPLETED, FAILED, CANCELLED, INTERRUPTED).

    Each state change is reported once; a failure also reports EMR's reason and the log file to read.
    """
    deadline = clock() + timeout
    last = None
    while True:
        status = emr_client.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Status"]
        state = str(status["State"])
        if state != last:
            report(f"step {step_id} on {cluster_id}: {state}")
            last = state
        if state in TERMINAL_STEP_STATES:
            details = status.get("FailureDetails") or {}
            if state != "COMPLETED" and details:
                report(
                    "  reason: {}\n  message: {}\n  log: {}".format(
                        details.get("Reason", "?"), details.get("Message", "?"), details.get("LogFile", "?")
                    )
                )
            return state
        if clock() >= deadline:
            raise TimeoutError(f"step {step_id} still {state} after {timeout:.0f} s (it keeps running on EMR)")
        sleep(poll_seconds)


def stack_outputs(cfn_client: BaseClient, stack_name: str) -> dict[str, str]:
    """Outputs of the deployed deploy/emr/cloudformation.yaml stack, by output key."""
    stacks = cfn_client.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
