"""Spark settings derived from the config (no Spark needed): the s3 section becomes fs.s3a.*, never credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from fruitfeat.config import config_from_dict
from fruitfeat.session import S3A_JARS_ENV, S3AUnavailableError, s3a_jars, spark_settings, uses_s3a


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


def local_config(tmp_path: Path, archive: str | None, **conf: str):
    data = {"input": {"path": str(tmp_path / "in")}, "output": {"path": str(tmp_path / "out")},
            "model": {"weights": "random"}, "spark": {"master": "local[2]", "class_archive": archive, "conf": conf}}
    return config_from_dict(data)


def java_options(cfg) -> str | None:
    from fruitfeat.session import driver_java_options

    return driver_java_options(cfg, spark_settings(cfg))


def test_the_class_archive_is_written_by_the_first_run_and_read_by_later_ones(tmp_path):
    from fruitfeat.session import DRIVER_JAVA_OPTIONS, class_archive_path

    cfg = local_config(tmp_path, str(tmp_path / "jvm" / "spark.jsa"), **{DRIVER_JAVA_OPTIONS: "-Dkept=1"})
    archive = class_archive_path(cfg, [])
    assert archive.parent == tmp_path / "jvm" and archive.name.startswith("spark-") and archive.suffix == ".jsa"
    partial = archive.with_name(archive.name + ".partial")
    assert java_options(cfg) == f"-Dkept=1 -XX:ArchiveClassesAtExit={partial}"
    archive.write_bytes(b"archive")  # in place: an earlier run's archive, checked when it was promoted
    assert java_options(cfg) == f"-Dkept=1 -XX:SharedArchiveFile={archive}"
    assert spark_settings(cfg)[DRIVER_JAVA_OPTIONS] == "-Dkept=1"  # the settings themselves never act
    # Another jar list means other classes: another file.
    assert class_archive_path(cfg, ["/jars/hadoop-aws-3.3.1.jar"]) != archive


def test_no_class_archive_unless_configured_for_a_local_master(tmp_path):
    assert java_options(local_config(tmp_path, None)) is None
    on_cluster = config_from_dict({"input": {"path": "s3a://b/in"}, "output": {"path": "s3a://b/out"},
                                   "model": {"weights": "random"}, "spark": {"class_archive": str(tmp_path / "a.jsa")}})
    assert java_options(on_cluster) is None  # spark-submit started the JVM: too late


_START_JVM = """
import json, sys
from fruitfeat.config import config_from_dict
from fruitfeat.session import build_spark_session
cfg = config_from_dict(json.loads(sys.argv[1]))
spark = build_spark_session(cfg)
args = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()
print("JVM_ARGS", json.dumps([str(a) for a in args]))
assert spark.range(10).count() == 10
"""


@pytest.mark.slow
def test_a_second_jvm_starts_from_the_archive_the_first_one_wrote(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from fruitfeat.session import class_archive_path

    data = {"input": {"path": str(tmp_path / "in")}, "output": {"path": str(tmp_path / "out")},
            "model": {"weights": "random"},
            "spark": {"master": "local[1]", "class_archive": str(tmp_path / "jvm" / "spark.jsa"),
                      "conf": {"spark.ui.enabled": "false"}}}
    archive = class_archive_path(config_from_dict(data), [])
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}

    def start_jvm() -> list[str]:
        done = subprocess.run([sys.executable, "-c", _START_JVM, json.dumps(data)], capture_output=True, text=True,
                              env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        (line,) = [l for l in done.stdout.splitlines() if l.startswith("JVM_ARGS")]
        return json.loads(line.split(" ", 1)[1])

    partial = archive.with_name(archive.name + ".partial")
    assert f"-XX:ArchiveClassesAtExit={partial}" in start_jvm()
    assert partial.stat().st_size > 1_000_000 and not archive.exists()  # Spark's classes, dumped at exit
    # A cut-short dump crashes JDK 17 (SIGBUS) instead of being ignored: it is never promoted.
    whole = partial.read_bytes()
    partial.write_bytes(whole[: len(whole) // 3])
    assert f"-XX:ArchiveClassesAtExit={partial}" in start_jvm()  # dropped, and written again
    assert f"-XX:SharedArchiveFile={archive}" in start_jvm()  # checked and promoted, then used
    assert archive.is_file() and not partial.exists()


def test_java_options_command_prints_the_archive_option_for_spark_submit(tmp_path, capsys):
    from fruitfeat.cli import main

    conf = tmp_path / "job.yaml"
    conf.write_text(
        f"input: {{path: '{tmp_path / 'in'}'}}\noutput: {{path: '{tmp_path / 'out'}'}}\nmodel: {{weights: random}}\n"
        f"spark: {{master: 'local[2]', class_archive: '{tmp_path / 'jvm' / 'spark.jsa'}'}}\n"
    )
    assert main(["java-options", "--config", str(conf)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith(f"-XX:ArchiveClassesAtExit={tmp_path / 'jvm' / 'spark-'}") and printed.endswith(".jsa.partial")
