"""What is sent to EMR, built without calling AWS: the step, the cluster request, the artefact keys.

The step and the cluster's Spark settings come from the JSON templates shipped inside the package
(``fruitfeat/cloud/templates/``), so that what is reviewed there is exactly what is sent, from a
checkout or from the installed wheel alike. Nothing here imports boto3.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlparse

from fruitfeat import __version__
from fruitfeat.config import JobConfig
from fruitfeat.errors import EmrError

#: EMR 7.12: Spark 3.5.6, Python 3.11 on the nodes, Java 17.
DEFAULT_RELEASE_LABEL = "emr-7.12.0"
DEFAULT_INSTANCE_TYPE = "m6i.xlarge"
DEFAULT_CONFIG_KEY = "conf/emr.yaml"
ENV_ARCHIVE_NAME = "fruitfeat-env.tar.gz"
ENTRY_KEY = "jobs/run_pipeline.py"


def load_template(name: str) -> Any:
    """A JSON template of ``fruitfeat/cloud/templates`` (package data: present in the wheel too)."""
    return json.loads(files("fruitfeat.cloud").joinpath("templates", name).read_text(encoding="utf-8"))


def s3_uri(bucket: str, *parts: str) -> str:
    """``s3://bucket/part/part`` with the slashes between parts normalised and empty parts dropped."""
    return "s3://" + "/".join([bucket, *(p.strip("/") for p in parts if p.strip("/"))])


def artifact_keys(*, env_archive: Path, wheel: Path, config: Path, entry: Path) -> dict[Path, str]:
    """What a run needs, local path -> key under the prefix: packed venv, wheel, entry script, config.

    The keys are the ones templates/step.json refers to (the config as ``conf/<file name>``).
    """
    return {env_archive: ENV_ARCHIVE_NAME, wheel: wheel.name, entry: ENTRY_KEY, config: f"conf/{config.name}"}


def config_buckets(config: JobConfig) -> set[str]:
    """Buckets the job reads or writes, so their regions can be checked before anything runs."""
    locations = [config.input.path, config.output.path, config.model.weights]
    return {urlparse(uri).netloc for uri in locations if urlparse(uri).scheme in ("s3", "s3a")}


def _substitute(node: Any, values: Mapping[str, str]) -> Any:
    """Fill ``${NAME}`` placeholders in every string; an unknown placeholder is an error, not a blank."""
    if isinstance(node, str):
        try:
            return Template(node).substitute(values)
        except KeyError as exc:
            raise EmrError(f"templates/step.json has an unknown placeholder {exc}") from None
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
) -> dict[str, Any]:
    """The EMR step of templates/step.json with its placeholders filled; ``job_args`` go to the job."""
    if not artifacts_uri.startswith("s3://"):
        raise EmrError(f"artifacts URI must be s3://bucket/prefix, got {artifacts_uri!r}")
    config_key = config_key.strip("/")
    values = {
        "ARTIFACTS_URI": artifacts_uri.rstrip("/"),
        "CONFIG_KEY": config_key,
        "CONFIG_NAME": config_key.rsplit("/", 1)[-1],
        "STEP_NAME": name,
    }
    step: dict[str, Any] = _substitute(load_template("step.json"), values)
    step["HadoopJarStep"]["Args"].extend(job_args)
    if action_on_failure:
        step["ActionOnFailure"] = action_on_failure
    return step


def load_configurations() -> list[dict[str, Any]]:
    """The cluster's Spark/YARN settings (templates/configurations.json)."""
    return load_template("configurations.json")


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
    subnet_id: str | None = None,
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
            {"VolumeSpecification": {"VolumeType": "gp3", "SizeInGB": 64}, "VolumesPerInstance": 1}
        ],
        "EbsOptimized": True,
    }
    group = {"Market": "ON_DEMAND", "InstanceType": instance_type}
    instances: dict[str, Any] = {
        "InstanceGroups": [
            {"Name": "primary", "InstanceRole": "MASTER", "InstanceCount": 1, **group},
            {"Name": "core", "InstanceRole": "CORE", "InstanceCount": core_instance_count, **group,
             "EbsConfiguration": ebs},
        ],
        "KeepJobFlowAliveWhenNoSteps": False,
        "TerminationProtected": False,
    }
    if subnet_id:
        instances["Ec2SubnetId"] = subnet_id
    tags = {"project": "fruitfeat", "fruitfeat-version": __version__, "data-classification": "personal"}
    return {
        "Name": name,
        "ReleaseLabel": release_label,
        "Applications": [{"Name": "Spark"}],
        "LogUri": log_uri,
        "Instances": instances,
        "Steps": [dict(step)],
        "Configurations": load_configurations(),
        "SecurityConfiguration": security_configuration,
        "ServiceRole": service_role,
        "JobFlowRole": instance_profile,
        "AutoTerminationPolicy": {"IdleTimeout": 3600},
        "EbsRootVolumeSize": 32,
        "StepConcurrencyLevel": 1,
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
    }
