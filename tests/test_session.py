"""Spark settings derived from the config (no Spark needed): the s3 section becomes fs.s3a.*, never credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from fruitfeat.config import config_from_dict
from fruitfeat.session import (
    S3A_JARS_ENV,
    S3AUnavailableError,
    s3a_jars,
    spark_settings,
    uses_s3a,
)


def config(input_path: str = "s3a://fruits-eu/in", **s3: object):
    data = {"input": {"path": input_path}, "output": {"path": "s3a://fruits-eu/out"}, "model": {"weights": "random"}}
    return config_from_dict({**data, "s3": s3})


def jar_dir(tmp_path: Path) -> Path:
    for name in ("hadoop-aws-3.3.1.jar", "aws-java-sdk-bundle-1.11.901.jar", "unrelated-1.0.jar"):
        (tmp_path / name).write_bytes(b"jar")
    return tmp_path


def test_s3_section_becomes_s3a_settings_without_credentials():
    settings = spark_settings(config(endpoint="http://127.0.0.1:5000", path_style_access=True, region="eu-west-1"))
    s3a = {k: v for k, v in settings.items() if k.startswith("spark.hadoop.fs.s3a.")}
    assert s3a == {
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:5000",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.endpoint.region": "eu-west-1",
    }
    https = spark_settings(config(endpoint="https://s3.eu-west-1.amazonaws.com"))
    assert https["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "true"
    assert not any(k.startswith("spark.hadoop.fs.s3a.") for k in spark_settings(config()))


def test_s3a_jars_are_added_only_when_an_s3a_uri_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv(S3A_JARS_ENV, raising=False)
    jars = jar_dir(tmp_path)
    settings = spark_settings(config(jars_dir=str(jars)))
    assert sorted(Path(j).name for j in settings["spark.jars"].split(",")) == [
        "aws-java-sdk-bundle-1.11.901.jar",
        "hadoop-aws-3.3.1.jar",
    ]
    local = config_from_dict(
        {"input": {"path": str(tmp_path)}, "output": {"path": "s3://b/out"}, "s3": {"jars_dir": str(jars)}}
    )
    assert not uses_s3a(local) and "spark.jars" not in spark_settings(local)
    assert "spark.jars" not in spark_settings(config())  # no directory: e.g. spark-submit --jars, or EMR

    monkeypatch.setenv(S3A_JARS_ENV, str(jars))
    assert len(s3a_jars(config())) == 2


def test_configured_spark_jars_are_kept_and_a_bad_jar_dir_is_reported(tmp_path):
    jars = jar_dir(tmp_path)
    data = {
        "input": {"path": "s3a://fruits-eu/in"},
        "output": {"path": "s3a://fruits-eu/out"},
        "spark": {"conf": {"spark.jars": "/opt/extra.jar"}},
        "s3": {"jars_dir": str(jars)},
    }
    assert spark_settings(config_from_dict(data))["spark.jars"].split(",")[0] == "/opt/extra.jar"
    (jars / "hadoop-aws-3.3.1.jar").unlink()
    with pytest.raises(S3AUnavailableError, match=r"lacks hadoop-aws-\*\.jar: run `make s3a-jars`"):
        spark_settings(config_from_dict(data))
