from pathlib import Path

import pytest

from fruitfeat.config import ConfigError, apply_overrides, load_config, normalize_location

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


MINIMAL = """
input: {path: data/in}
output: {path: s3a://bucket/out/}
"""


def test_checked_in_configs_are_valid():
    local = load_config(REPO / "conf/local.yaml")
    emr = load_config(REPO / "conf/emr.yaml")
    assert local.profile == "local" and local.spark.master == "local[2]"
    assert local.model.weights.endswith("data/weights/mobilenetv2_notop.weights.h5")
    assert emr.profile == "emr" and emr.spark.master is None
    assert emr.input.path.startswith("s3://") and emr.model.weights.startswith("s3://")


def test_defaults_and_normalised_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(write(tmp_path, MINIMAL))
    assert config.input.path == f"file://{tmp_path}/data/in"
    assert config.output.path == "s3a://bucket/out"
    assert (config.pca.k, config.featurize.image_size, config.featurize.batch_size) == (50, 224, 64)
    assert config.model.weights == "imagenet"
    assert config.input.extensions == ("jpeg", "jpg", "png")


def test_overrides_are_typed_and_validated(tmp_path):
    config = load_config(write(tmp_path, MINIMAL), ["pca.k=7", "spark.conf.spark.foo=1", "model.weights=random"])
    assert config.pca.k == 7 and isinstance(config.pca.k, int)
    assert load_config(write(tmp_path, MINIMAL), ["pca.k=0.95"]).pca.k == 0.95
    assert config.model.weights == "random"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, MINIMAL), ["featurize.image_size=big"])
    assert "featurize.image_size" in str(err.value) and "job.yaml" in str(err.value)


def test_overrides_nest_new_sections():
    assert apply_overrides({}, ["a.b.c=3"]) == {"a": {"b": {"c": 3}}}
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        apply_overrides({}, ["novalue"])


@pytest.mark.parametrize(
    ("extra", "field", "reason"),
    [
        ("pca: {k: 0}", "pca.k", "between 1 and 1280, got 0"),
        ("pca: {k: 2000}", "pca.k", "between 1 and 1280, got 2000"),
        ("pca: {k: 1.5}", "pca.k", "variance target must be in (0, 1]"),
        ("pca: {k: yes}", "pca.k", "not a boolean"),
        ("classifier: {candidates: [{family: svm}]}", "classifier.candidates", "svm"),
        ("featurize: {image_size: 8}", "featurize.image_size", "greater than or equal to 32"),
        ("pca: {kk: 3}", "pca.kk", "unknown key"),
        ("model: {weights: /tmp/w.h5}", "model.weights", "ending in .weights.h5"),
        ("input: {path: 'ftp://x/y'}", "input.path", "unsupported scheme"),
        ("input: {path: 's3://'}", "input.path", "no bucket"),
    ],
)
def test_bad_values_name_file_field_and_reason(tmp_path, extra, field, reason):
    text = MINIMAL if extra.split(":")[0] != "input" else "output: {path: out}"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text + "\n" + extra))
    message = str(err.value)
    assert str(tmp_path / "job.yaml") in message
    assert field in message and reason in message


def test_emr_profile_guards(tmp_path):
    emr = "profile: emr\ninput: {path: 's3://b/in'}\noutput: {path: 's3://b/out'}\nmodel: {weights: random}\n"
    with pytest.raises(ConfigError, match="'random' is for tests"):
        load_config(write(tmp_path, emr))
    local_out = emr.replace("'s3://b/out'", "/tmp/out").replace("random", "imagenet")
    with pytest.raises(ConfigError, match="output.path must be an s3:// URI"):
        load_config(write(tmp_path, local_out))


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "input: [unclosed"))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="input: Field required"):
        load_config(write(tmp_path, "output: {path: out}\n"))


def test_normalize_location_keeps_object_store_uris():
    assert normalize_location("s3://bucket/a/b/") == "s3://bucket/a/b"
    assert normalize_location("file:///tmp/x/../y") == "file:///tmp/y"
    assert normalize_location("/tmp/with space") == "file:///tmp/with space"  # no %20: Hadoop reads it literally


@pytest.mark.parametrize(
    "extra",
    [
        "spark: {conf: {spark.hadoop.fs.s3a.secret.key: abc}}",
        "spark: {conf: {spark.hadoop.fs.s3a.access.key: abc}}",
        "spark: {app_name: 'AKIAABCDEFGHIJKLMNOP'}",
        "aws_session_token: xyz",
    ],
)
def test_credentials_in_config_are_refused_without_echoing_them(tmp_path, extra):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, MINIMAL + extra + "\n"))
    message = str(err.value)
    assert "looks like a credential" in message
    assert "abc" not in message and "xyz" not in message and "AKIAABCDEFGHIJKLMNOP" not in message


def test_reliability_limits_are_validated(tmp_path):
    config = load_config(write(tmp_path, MINIMAL), ["quarantine.max_fraction=0.2", "input.max_file_bytes=1000"])
    assert config.quarantine.max_fraction == 0.2 and config.input.max_file_bytes == 1000
    with pytest.raises(ConfigError, match="quarantine.max_fraction"):
        load_config(write(tmp_path, MINIMAL), ["quarantine.max_fraction=1.5"])
