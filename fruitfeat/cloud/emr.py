"""Run fruitfeat on Amazon EMR: upload the artifacts, start a transient cluster (or add a step), watch it.

``make emr-upload`` / ``make emr-submit`` call :func:`main`. The cluster, the step and the Spark
settings come from ``deploy/emr/*.json`` so that what is reviewed there is exactly what is sent.

Credentials come only from the standard AWS chain (environment, ``AWS_PROFILE``/SSO, instance
profile): nothing here reads, stores or logs them. Every call is refused outside the EU regions,
because the photos, their EXIF and their file names are personal data (see docs/gdpr.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from fruitfeat import __version__
from fruitfeat.config import ConfigError, JobConfig, load_config
from fruitfeat.config.regions import RegionError, check_region
from fruitfeat.errors import EmrError

log = logging.getLogger(__name__)

DEFAULT_REGION = "eu-west-1"
#: EMR 7.12: Spark 3.5.6, Python 3.11 on the nodes, Java 17.
DEFAULT_RELEASE_LABEL = "emr-7.12.0"
DEFAULT_INSTANCE_TYPE = "m6i.xlarge"
DEFAULT_PREFIX = "emr"
DEFAULT_CONFIG_KEY = "conf/emr.yaml"
ENV_ARCHIVE_NAME = "fruitfeat-env.tar.gz"
ENTRY_KEY = "jobs/run_pipeline.py"
TERMINAL_STEP_STATES = frozenset({"COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED"})
SSE_KMS = "aws:kms"

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy" / "emr"

#: CloudFormation output -> CLI option it provides (see deploy/emr/cloudformation.yaml).
STACK_OUTPUTS = {
    "DataBucketName": "bucket",
    "EmrLogUri": "log_uri",
    "EmrServiceRoleName": "service_role",
    "EmrInstanceProfileName": "instance_profile",
    "SecurityConfigurationName": "security_configuration",
    "DataKeyArn": "kms_key_id",
}




def check_bucket_region(s3_client: BaseClient, bucket: str) -> str:
    """The bucket's region, refused unless it is in the EU (a bucket name says nothing about where it lives)."""
    location = s3_client.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
    if location == "EU":  # legacy alias of eu-west-1
        location = "eu-west-1"
    try:
        return check_region(location)
    except RegionError:
        raise RegionError(f"bucket {bucket!r} is in {location}, outside the EU: choose an EU bucket") from None


def _s3_uri(bucket: str, *parts: str) -> str:
    return "s3://" + "/".join([bucket, *(p.strip("/") for p in parts if p.strip("/"))])


# ------------------------------------------------------------------ artifacts


def default_artifacts(
    *, env_archive: Path, wheel: Path, config: Path, entry: Path = REPO_ROOT / ENTRY_KEY
) -> dict[Path, str]:
    """What a run needs, local path -> key under the prefix: packed venv, wheel, entry script, config.

    The keys are the ones deploy/emr/step.json refers to (the config as ``conf/<file name>``).
    """
    return {env_archive: ENV_ARCHIVE_NAME, wheel: wheel.name, entry: ENTRY_KEY, config: f"conf/{config.name}"}


def config_buckets(config: JobConfig) -> set[str]:
    """Buckets the job reads or writes, so their regions can be checked before anything runs."""
    locations = [config.input.path, config.output.path, config.model.weights]
    return {urlparse(uri).netloc for uri in locations if urlparse(uri).scheme in ("s3", "s3a")}


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
        uris.append(_s3_uri(bucket, full_key))
    return uris


# ------------------------------------------------------------------ requests


def _load_json(name: str, deploy_dir: Path) -> Any:
    path = deploy_dir / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmrError(
            f"{path} is missing: run from a fruitfeat checkout (deploy/emr/ holds the EMR settings)"
        ) from None


def _substitute(node: Any, values: Mapping[str, str]) -> Any:
    """Fill ``${NAME}`` placeholders in every string; an unknown placeholder is an error, not a blank."""
    if isinstance(node, str):
        try:
            return Template(node).substitute(values)
        except KeyError as exc:
            raise EmrError(f"deploy/emr/step.json has an unknown placeholder {exc}") from None
    if isinstance(node, list):
        return [_substitute(item, values) for item in node]
    if isinstance(node, dict):
        return {key: _substitute(value, values) for key, value in node.items()}
    return node


def build_step(
    artifacts_uri: str,
    config_key: str = DEFAULT_CONFIG_KEY,
    *,
    name: str = "fruitfeat",
    job_args: Sequence[str] = (),
    action_on_failure: str | None = None,
    deploy_dir: Path = DEPLOY_DIR,
) -> dict[str, Any]:
    """The EMR step of deploy/emr/step.json with its placeholders filled; ``job_args`` go to the job."""
    if not artifacts_uri.startswith("s3://"):
        raise EmrError(f"artifacts URI must be s3://bucket/prefix, got {artifacts_uri!r}")
    config_key = config_key.strip("/")
    values = {
        "ARTIFACTS_URI": artifacts_uri.rstrip("/"),
        "CONFIG_KEY": config_key,
        "CONFIG_NAME": config_key.rsplit("/", 1)[-1],
        "STEP_NAME": name,
    }
    step: dict[str, Any] = _substitute(_load_json("step.json", deploy_dir), values)
    step["HadoopJarStep"]["Args"].extend(job_args)
    if action_on_failure:
        step["ActionOnFailure"] = action_on_failure
    return step


def load_configurations(deploy_dir: Path = DEPLOY_DIR) -> list[dict[str, Any]]:
    """The cluster's Spark/YARN settings (deploy/emr/configurations.json)."""
    configurations: list[dict[str, Any]] = _load_json("configurations.json", deploy_dir)
    return configurations


def build_cluster_request(
    *,
    step: Mapping[str, Any],
    log_uri: str,
    service_role: str,
    instance_profile: str,
    security_configuration: str,
    name: str = "fruitfeat",
    release_label: str = DEFAULT_RELEASE_LABEL,
    instance_type: str = DEFAULT_INSTANCE_TYPE,
    core_instance_count: int = 2,
    core_volume_gib: int = 64,
    subnet_id: str | None = None,
    ebs_root_volume_size: int = 32,
    idle_timeout_seconds: int = 3600,
    tags: Mapping[str, str] | None = None,
    configurations: list[dict[str, Any]] | None = None,
    deploy_dir: Path = DEPLOY_DIR,
) -> dict[str, Any]:
    """A RunJobFlow request for a transient cluster that runs ``step`` and terminates.

    The cluster ends when its step does (KeepJobFlowAliveWhenNoSteps=False); the idle auto-termination
    policy is a second guard against paying for a forgotten cluster.
    """
    if not release_label.startswith("emr-7."):
        raise EmrError(f"release {release_label!r}: fruitfeat targets EMR 7.x (Spark 3.5, Python 3.11, Java 17)")
    if not log_uri.startswith("s3://"):
        raise EmrError(f"log URI must be s3://..., got {log_uri!r}")
    if core_instance_count < 1:
        raise EmrError("core_instance_count must be at least 1")
    ebs = {
        "EbsBlockDeviceConfigs": [
            {"VolumeSpecification": {"VolumeType": "gp3", "SizeInGB": core_volume_gib}, "VolumesPerInstance": 1}
        ],
        "EbsOptimized": True,
    }
    instances: dict[str, Any] = {
        "InstanceGroups": [
            {
                "Name": "primary",
                "InstanceRole": "MASTER",
                "Market": "ON_DEMAND",
                "InstanceType": instance_type,
                "InstanceCount": 1,
            },
            {
                "Name": "core",
                "InstanceRole": "CORE",
                "Market": "ON_DEMAND",
                "InstanceType": instance_type,
                "InstanceCount": core_instance_count,
                "EbsConfiguration": ebs,
            },
        ],
        "KeepJobFlowAliveWhenNoSteps": False,
        "TerminationProtected": False,
    }
    if subnet_id:
        instances["Ec2SubnetId"] = subnet_id
    all_tags = {"project": "fruitfeat", "fruitfeat-version": __version__, "data-classification": "personal"}
    all_tags.update(tags or {})
    return {
        "Name": name,
        "ReleaseLabel": release_label,
        "Applications": [{"Name": "Spark"}],
        "LogUri": log_uri,
        "Instances": instances,
        "Steps": [dict(step)],
        "Configurations": configurations if configurations is not None else load_configurations(deploy_dir),
        "SecurityConfiguration": security_configuration,
        "ServiceRole": service_role,
        "JobFlowRole": instance_profile,
        "AutoTerminationPolicy": {"IdleTimeout": idle_timeout_seconds},
        "EbsRootVolumeSize": ebs_root_volume_size,
        "StepConcurrencyLevel": 1,
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(all_tags.items())],
    }


# ------------------------------------------------------------------ calls


@dataclass(frozen=True)
class Submission:
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


def console_url(region: str, cluster_id: str) -> str:
    return f"https://{region}.console.aws.amazon.com/emr/home?region={region}#/clusterDetails/{cluster_id}"


# ------------------------------------------------------------------ CLI


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--region", default=DEFAULT_REGION, help=f"EU region (default {DEFAULT_REGION})")
    common.add_argument("--stack", help="stack of deploy/emr/cloudformation.yaml; its outputs fill unset options")
    common.add_argument("--bucket", help="data bucket (default: the stack's DataBucketName)")
    common.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"artifacts key prefix (default {DEFAULT_PREFIX!r})")
    common.add_argument("--kms-key-id", help="KMS key ARN for SSE-KMS (default: the stack's DataKeyArn)")
    job = argparse.ArgumentParser(add_help=False)
    job.add_argument(
        "--config",
        type=Path,
        default=REPO_ROOT / DEFAULT_CONFIG_KEY,
        help="job config, uploaded as conf/<file name> (default conf/emr.yaml)",
    )
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument("--wait", action="store_true", help="poll until the step ends; exit 1 unless it completed")
    waiting.add_argument("--poll-seconds", type=float, default=30.0)
    waiting.add_argument("--timeout", type=float, default=6 * 3600.0, help="seconds to wait (the step keeps running)")

    parser = argparse.ArgumentParser(prog="python -m fruitfeat.cloud.emr", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    upload = commands.add_parser(
        "upload", parents=[common, job], help="upload packed venv, wheel, entry script, config"
    )
    upload.add_argument("--env-archive", type=Path, default=REPO_ROOT / "dist" / ENV_ARCHIVE_NAME)
    upload.add_argument("--wheel", type=Path, default=REPO_ROOT / "dist" / f"fruitfeat-{__version__}-py3-none-any.whl")

    run = commands.add_parser(
        "submit",
        parents=[common, job, waiting],
        help="start a transient cluster that runs the job, or add the job to --cluster-id",
    )
    run.add_argument("--cluster-id", help="add the step to this running cluster instead of starting one")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to the job as --set KEY=VALUE (repeatable); checked against --config first",
    )
    run.add_argument("--name", default="fruitfeat")
    run.add_argument("--service-role")
    run.add_argument("--instance-profile")
    run.add_argument("--security-configuration")
    run.add_argument("--log-uri")
    run.add_argument("--subnet-id", help="subnet tagged for-use-with-amazon-emr-managed-policies=true")
    run.add_argument("--instance-type", default=DEFAULT_INSTANCE_TYPE)
    run.add_argument("--core-count", type=int, default=2)
    run.add_argument("--release-label", default=DEFAULT_RELEASE_LABEL)

    status = commands.add_parser("status", parents=[common, waiting], help="state of a cluster and its steps")
    status.add_argument("--cluster-id", required=True)
    status.add_argument("--step-id", help="default: the newest step")
    return parser


def _echo(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _fill_from_stack(args: argparse.Namespace, session: boto3.Session) -> None:
    """Options not given on the command line are taken from the stack outputs."""
    if not args.stack:
        return
    outputs = stack_outputs(session.client("cloudformation"), args.stack)
    for output, option in STACK_OUTPUTS.items():
        if hasattr(args, option) and not getattr(args, option) and output in outputs:
            setattr(args, option, outputs[output])


def _require(args: argparse.Namespace, names: Iterable[str]) -> None:
    missing = [f"--{n.replace('_', '-')}" for n in names if not getattr(args, n, None)]
    if missing:
        raise EmrError(f"missing {', '.join(missing)} (or --stack NAME to read them from the stack outputs)")


def _checked_config(path: Path, overrides: list[str], s3: BaseClient, bucket: str) -> JobConfig:
    """Validate the job config here, in milliseconds, instead of after a cluster has booted; EU buckets only."""
    try:
        config = load_config(path, overrides)
    except ConfigError as exc:
        raise EmrError(str(exc)) from None
    if config.profile != "emr":
        raise EmrError(f"{path} has profile {config.profile!r}; a cluster run needs profile: emr")
    for name in sorted({bucket} | config_buckets(config)):
        check_bucket_region(s3, name)
    return config


def _upload(args: argparse.Namespace, session: boto3.Session) -> int:
    _require(args, ["bucket"])
    s3 = session.client("s3")
    _checked_config(args.config, [], s3, args.bucket)
    archive, wheel = args.env_archive, args.wheel
    if archive.is_file() and wheel.is_file() and archive.stat().st_mtime < wheel.stat().st_mtime:
        _echo(f"warning: {archive} is older than {wheel}: rebuild it (docs/emr.md) so the cluster runs this code")
    files = default_artifacts(env_archive=archive, wheel=wheel, config=args.config)
    for uri in upload_artifacts(s3, args.bucket, args.prefix, files, args.kms_key_id):
        print(uri)
    return 0


def _submit(args: argparse.Namespace, session: boto3.Session) -> int:
    _require(args, ["bucket"])
    _checked_config(args.config, args.overrides, session.client("s3"), args.bucket)
    emr = session.client("emr")
    job_args = [item for override in args.overrides for item in ("--set", override)]
    artifacts_uri = _s3_uri(args.bucket, args.prefix)
    config_key = f"conf/{args.config.name}"
    if args.cluster_id:
        step = build_step(artifacts_uri, config_key, name=args.name, job_args=job_args, action_on_failure="CONTINUE")
        result = submit(emr, cluster_id=args.cluster_id, step=step)
    else:
        _require(args, ["log_uri", "service_role", "instance_profile", "security_configuration"])
        request = build_cluster_request(
            step=build_step(artifacts_uri, config_key, name=args.name, job_args=job_args),
            log_uri=args.log_uri,
            service_role=args.service_role,
            instance_profile=args.instance_profile,
            security_configuration=args.security_configuration,
            name=args.name,
            release_label=args.release_label,
            instance_type=args.instance_type,
            core_instance_count=args.core_count,
            subnet_id=args.subnet_id,
        )
        result = submit(emr, request)
    kind = "new transient cluster" if result.new_cluster else "added to running cluster"
    print(f"cluster {result.cluster_id}  step {result.step_id}  ({kind})")
    print(console_url(args.region, result.cluster_id))
    if not args.wait:
        return 0
    state = wait_for_step(emr, result.cluster_id, result.step_id, args.poll_seconds, args.timeout, report=_echo)
    return 0 if state == "COMPLETED" else 1


def _status(args: argparse.Namespace, session: boto3.Session) -> int:
    emr = session.client("emr")
    cluster = emr.describe_cluster(ClusterId=args.cluster_id)["Cluster"]
    reason = cluster["Status"].get("StateChangeReason", {}).get("Message", "")
    print(f"cluster {cluster['Id']} {cluster['Name']!r}: {cluster['Status']['State']} {reason}".rstrip())
    steps = emr.list_steps(ClusterId=args.cluster_id)["Steps"]
    for step in steps:
        print(f"  step {step['Id']} {step['Name']!r}: {step['Status']['State']}")
    step_id = args.step_id or (steps[0]["Id"] if steps else None)
    if not (args.wait and step_id):
        return 0
    state = wait_for_step(emr, args.cluster_id, step_id, args.poll_seconds, args.timeout, report=_echo)
    return 0 if state == "COMPLETED" else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("fruitfeat").setLevel(logging.INFO)
    commands = {"upload": _upload, "submit": _submit, "status": _status}
    try:
        check_region(args.region)
        session = boto3.Session(region_name=args.region)
        _fill_from_stack(args, session)
        return commands[args.command](args, session)
    except NoCredentialsError:
        _echo(
            "fruitfeat.cloud.emr: no AWS credentials: use AWS_PROFILE (aws sso login), the environment or an instance profile"
        )
        return 2
    except (EmrError, RegionError, TimeoutError) as exc:
        _echo(f"fruitfeat.cloud.emr: {exc}")
        return 2 if isinstance(exc, (EmrError, RegionError)) else 1
    except (ClientError, BotoCoreError) as exc:
        _echo(f"fruitfeat.cloud.emr: AWS error: {exc}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
