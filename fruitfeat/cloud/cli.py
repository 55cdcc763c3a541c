"""Run fruitfeat on Amazon EMR: upload the artefacts, start a transient cluster (or add a step), watch it.

``make emr-*`` runs it from the repository root, so the checkout's files (entry script, dist/, conf/emr.yaml)
default to paths relative to the current directory. Credentials come only from the standard AWS chain,
and every call stays in the EU: the photos, their EXIF and their file names are personal data (docs/gdpr.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import boto3
from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from fruitfeat import __version__
from fruitfeat.cloud.aws import (
    check_bucket_region,
    stack_outputs,
    submit,
    upload_artifacts,
    wait_for_step,
)
from fruitfeat.cloud.requests import (
    DEFAULT_CONFIG_KEY,
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_RELEASE_LABEL,
    ENTRY_KEY,
    ENV_ARCHIVE_NAME,
    artifact_keys,
    build_cluster_request,
    build_step,
    config_buckets,
    s3_uri,
)
from fruitfeat.config import JobConfig, load_config
from fruitfeat.config.regions import check_region
from fruitfeat.errors import EmrError, FruitfeatError, RegionError, report_error

DEFAULT_REGION = "eu-west-1"
DEFAULT_PREFIX = "emr"

#: CloudFormation output -> CLI option it provides (see deploy/emr/cloudformation.yaml).
STACK_OUTPUTS = {
    "DataBucketName": "bucket",
    "EmrLogUri": "log_uri",
    "EmrServiceRoleName": "service_role",
    "EmrInstanceProfileName": "instance_profile",
    "SecurityConfigurationName": "security_configuration",
    "DataKeyArn": "kms_key_id",
}

#: Local file option -> how to get that file, for the error when it is missing.
FILE_HINTS = {
    "config": "the job config (profile: emr)",
    "env_archive": "build it with `make emr-package` or deploy/emr/Dockerfile.env (docs/emr.md)",
    "wheel": "build it with `make wheel`",
    "entry": "the job's entry script, jobs/run_pipeline.py of a fruitfeat checkout",
}


def _eu_region(value: str) -> str:
    """argparse type: a region outside the EU is a usage error, refused before any client exists."""
    try:
        return check_region(value)
    except RegionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--region", type=_eu_region, default=DEFAULT_REGION, help=f"EU region (default {DEFAULT_REGION})"
    )
    common.add_argument("--stack", help="stack of deploy/emr/cloudformation.yaml; its outputs fill unset options")
    common.add_argument("--bucket", help="data bucket (default: the stack's DataBucketName)")
    common.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"artifacts key prefix (default {DEFAULT_PREFIX!r})")
    common.add_argument("--kms-key-id", help="KMS key ARN for SSE-KMS (default: the stack's DataKeyArn)")
    job = argparse.ArgumentParser(add_help=False)
    job.add_argument("--config", type=Path, default=Path(DEFAULT_CONFIG_KEY),
                     help=f"job config, uploaded as conf/<file name> (default {DEFAULT_CONFIG_KEY})")
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument("--wait", action="store_true", help="poll until the step ends; exit 1 unless it completed")
    waiting.add_argument("--poll-seconds", type=float, default=30.0)
    waiting.add_argument("--timeout", type=float, default=6 * 3600.0, help="seconds to wait (the step keeps running)")

    parser = argparse.ArgumentParser(prog="python -m fruitfeat.cloud.cli", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    upload = commands.add_parser("upload", parents=[common, job], help="upload venv, wheel, entry script, config")
    archive, wheel = Path("dist", ENV_ARCHIVE_NAME), Path("dist", f"fruitfeat-{__version__}-py3-none-any.whl")
    upload.add_argument("--env-archive", type=Path, default=archive, help=f"packed venv (default {archive})")
    upload.add_argument("--wheel", type=Path, default=wheel, help=f"the wheel the venv holds (default {wheel})")
    upload.add_argument("--entry", type=Path, default=Path(ENTRY_KEY), help=f"entry script (default {ENTRY_KEY})")

    run = commands.add_parser("submit", parents=[common, job, waiting],
                              help="start a transient cluster that runs the job, or add the job to --cluster-id")
    run.add_argument("--cluster-id", help="add the step to this running cluster instead of starting one")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="passed to the job as --set KEY=VALUE (repeatable); checked against --config first")
    run.add_argument("--name", default="fruitfeat")
    for option in ("--service-role", "--instance-profile", "--security-configuration", "--log-uri"):
        run.add_argument(option)  # default: the stack's output (STACK_OUTPUTS)
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


def _missing_options(args: argparse.Namespace) -> list[str]:
    """Options the command needs that neither the command line nor the stack gave."""
    needed = [] if args.command == "status" else ["bucket"]
    if args.command == "submit" and not args.cluster_id:  # a new cluster, not a step for a running one
        needed += ["log_uri", "service_role", "instance_profile", "security_configuration"]
    return [f"--{name.replace('_', '-')}" for name in needed if not getattr(args, name, None)]


def _local_file(args: argparse.Namespace, option: str) -> Path:
    """The file an option names; missing, it is an error that says which option and how to get it."""
    path: Path = getattr(args, option)
    if not path.is_file():
        flag = f"--{option.replace('_', '-')}"
        where = "" if path.is_absolute() else f" (relative to {os.getcwd()})"
        raise EmrError(f"{flag} {path}: no such file{where}; {FILE_HINTS[option]}, or pass {flag} PATH")
    return path


def _checked_config(path: Path, overrides: list[str], s3: BaseClient, bucket: str) -> JobConfig:
    """Validate the job config here, in milliseconds, instead of after a cluster has booted; EU buckets only."""
    config = load_config(path, overrides)
    if config.profile != "emr":
        raise EmrError(f"{path} has profile {config.profile!r}; a cluster run needs profile: emr")
    for name in sorted({bucket} | config_buckets(config)):
        check_bucket_region(s3, name)
    return config


def _upload(args: argparse.Namespace, session: boto3.Session) -> int:
    config, archive, wheel, entry = (_local_file(args, o) for o in ("config", "env_archive", "wheel", "entry"))
    s3 = session.client("s3")
    _checked_config(config, [], s3, args.bucket)
    if archive.stat().st_mtime < wheel.stat().st_mtime:
        _echo(f"warning: {archive} is older than {wheel}: rebuild it (docs/emr.md) so the cluster runs this code")
    files = artifact_keys(env_archive=archive, wheel=wheel, config=config, entry=entry)
    for uri in upload_artifacts(s3, args.bucket, args.prefix, files, args.kms_key_id):
        print(uri)
    return 0


def _wait(args: argparse.Namespace, emr: BaseClient, cluster_id: str, step_id: str) -> int:
    state = wait_for_step(emr, cluster_id, step_id, args.poll_seconds, args.timeout, report=_echo)
    return 0 if state == "COMPLETED" else 1


def _submit(args: argparse.Namespace, session: boto3.Session) -> int:
    config = _local_file(args, "config")
    _checked_config(config, args.overrides, session.client("s3"), args.bucket)
    emr = session.client("emr")
    job_args = [item for override in args.overrides for item in ("--set", override)]
    step = build_step(
        s3_uri(args.bucket, args.prefix), f"conf/{config.name}", name=args.name, job_args=job_args,
        action_on_failure="CONTINUE" if args.cluster_id else None,
    )
    if args.cluster_id:
        result = submit(emr, cluster_id=args.cluster_id, step=step)
    else:
        result = submit(emr, build_cluster_request(
            step=step, log_uri=args.log_uri, service_role=args.service_role, instance_profile=args.instance_profile,
            security_configuration=args.security_configuration, name=args.name, release_label=args.release_label,
            instance_type=args.instance_type, core_instance_count=args.core_count, subnet_id=args.subnet_id,
        ))
    kind = "new transient cluster" if result.new_cluster else "added to running cluster"
    print(f"cluster {result.cluster_id}  step {result.step_id}  ({kind})")
    region, cluster_id = args.region, result.cluster_id
    print(f"https://{region}.console.aws.amazon.com/emr/home?region={region}#/clusterDetails/{cluster_id}")
    return _wait(args, emr, result.cluster_id, result.step_id) if args.wait else 0


def _status(args: argparse.Namespace, session: boto3.Session) -> int:
    emr = session.client("emr")
    cluster = emr.describe_cluster(ClusterId=args.cluster_id)["Cluster"]
    reason = cluster["Status"].get("StateChangeReason", {}).get("Message", "")
    print(f"cluster {cluster['Id']} {cluster['Name']!r}: {cluster['Status']['State']} {reason}".rstrip())
    steps = emr.list_steps(ClusterId=args.cluster_id)["Steps"]
    for step in steps:
        print(f"  step {step['Id']} {step['Name']!r}: {step['Status']['State']}")
    step_id = args.step_id or (steps[0]["Id"] if steps else None)
    return _wait(args, emr, args.cluster_id, step_id) if args.wait and step_id else 0


def main(argv: Sequence[str] | None = None) -> int:
    """0: done (with --wait: the step completed); errors exit as fruitfeat.errors says, usage errors with 2."""
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("fruitfeat").setLevel(logging.INFO)
    commands = {"upload": _upload, "submit": _submit, "status": _status}
    try:
        session = boto3.Session(region_name=args.region)
        _fill_from_stack(args, session)
        missing = _missing_options(args)
        if missing:
            parser.error(f"{args.command} needs {', '.join(missing)} (or --stack NAME to read them from its outputs)")
        return commands[args.command](args, session)
    except FruitfeatError as exc:
        return report_error(exc)
    except TimeoutError as exc:
        return report_error(EmrError(str(exc)))
    except NoCredentialsError:
        return report_error(
            EmrError("no AWS credentials: use AWS_PROFILE (aws sso login), the environment or an instance profile")
        )
    except (ClientError, BotoCoreError) as exc:
        return report_error(EmrError(f"AWS error: {exc}"))


if __name__ == "__main__":
    raise SystemExit(main())
