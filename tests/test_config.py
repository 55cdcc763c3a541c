from pathlib import Path

import pytest

from fruitfeat.config import ConfigError, apply_overrides, config_from_dict, load_config
from fruitfeat.config.sections import DEFAULT_BATCH_SIZES
from fruitfeat.io.uris import normalize_location

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


#: Shaped like an AWS access key id, built at run time so no key-like literal sits in the repository.
FAKE_KEY_ID = "AK" + "IA" + "ABCDEFGHIJKLMNOP"

MINIMAL = """
input: {path: data/in}
output: {path: s3a://bucket/out/}
"""


def test_checked_in_configs_are_valid():
    local = load_config(REPO / "conf/local.yaml")
    emr = load_config(REPO / "conf/emr.yaml")
    assert local.profile == "local" and local.spark.master == "local[2]"
    assert local.model.weights.endswith("data/weights/mobilenetv2_notop.onnx")  # what `make weights` writes
    assert emr.profile == "emr" and emr.spark.master is None
    assert emr.input.path.startswith("s3://") and emr.model.weights == "s3://fruits-eu-data/weights/mobilenetv2_notop.int8.onnx"
    assert emr.model.precision == "int8" and local.model.precision == "fp32"  # int8 where cost matters


def test_the_store_sits_under_the_output_unless_placed_elsewhere(tmp_path):
    emr = load_config(REPO / "conf/emr.yaml")
    assert emr.store.incremental and emr.store_path == "s3://fruits-eu-data/fruitfeat/store"  # the output bucket
    assert load_config(REPO / "conf/local.yaml").store.incremental
    base = {"input": {"path": "s3://b/in"}, "output": {"path": "s3://b/out/"}}
    assert config_from_dict({**base, "store": {"path": "s3://b/features/"}}).store_path == "s3://b/features"
    emr_base = {**base, "profile": "emr", "model": {"weights": "s3://b/w/m.onnx"}, "s3": {"region": "eu-west-1"}}
    with pytest.raises(ConfigError, match="store.path must be an s3:// URI in the emr profile"):
        config_from_dict({**emr_base, "store": {"path": str(tmp_path)}})
    with pytest.raises(ConfigError, match="compact_after_segments"):
        config_from_dict({**base, "store": {"compact_after_segments": 1}})


def test_an_onnx_model_needs_onnxruntime():
    base = {"input": {"path": "s3://b/in"}, "output": {"path": "s3://b/out"}}
    assert config_from_dict({**base, "model": {"weights": "s3://b/w/m.onnx"}}).model.runtime == "onnxruntime"
    with pytest.raises(ConfigError, match="an .onnx model runs with model.runtime onnxruntime"):
        config_from_dict({**base, "model": {"weights": "s3://b/w/m.onnx", "runtime": "tensorflow"}})
    h5 = config_from_dict({**base, "model": {"weights": "s3://b/w/m.weights.h5", "runtime": "tensorflow"}})
    assert h5.model.weights == "s3://b/w/m.weights.h5"


def test_defaults_and_normalised_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(write(tmp_path, MINIMAL))
    assert config.input.path == f"file://{tmp_path}/data/in"
    assert config.output.path == "s3a://bucket/out"
    assert (config.pca.k, config.featurize.image_size, config.featurize.batch_size) == (50, 224, None)
    assert config.inference_batch_size == 2  # onnxruntime's measured best
    assert config.model.weights == "imagenet"
    assert config.input.extensions == ("jpeg", "jpg", "png")


def test_inference_batch_defaults_to_the_runtimes_best_and_an_explicit_one_wins(tmp_path):
    base = {"input": {"path": str(tmp_path)}, "output": {"path": str(tmp_path / "out")}}
    assert config_from_dict(base).inference_batch_size == DEFAULT_BATCH_SIZES["onnxruntime"] == 2
    tf = config_from_dict({**base, "model": {"runtime": "tensorflow"}})
    assert tf.inference_batch_size == DEFAULT_BATCH_SIZES["tensorflow"] == 16
    assert config_from_dict({**base, "featurize": {"batch_size": 8}}).inference_batch_size == 8


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
        ("classifier: {candidates: [{family: svm}]}", "classifier.candidates.0", "'svm' found using 'family'"),
        ("classifier: {candidates: [{family: mlp, hidden: [8]}]}", "classifier.candidates.0.mlp.hidden", "unknown key"),
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
        "spark: {app_name: '" + FAKE_KEY_ID + "'}",
        "aws_session_token: xyz",
    ],
)
def test_credentials_in_config_are_refused_without_echoing_them(tmp_path, extra):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, MINIMAL + extra + "\n"))
    message = str(err.value)
    assert "looks like a credential" in message
    assert "abc" not in message and "xyz" not in message and FAKE_KEY_ID not in message


def test_reliability_limits_are_validated(tmp_path):
    config = load_config(write(tmp_path, MINIMAL), ["quarantine.max_fraction=0.2", "input.max_file_bytes=1000"])
    assert config.quarantine.max_fraction == 0.2 and config.input.max_file_bytes == 1000
    with pytest.raises(ConfigError, match="quarantine.max_fraction"):
        load_config(write(tmp_path, MINIMAL), ["quarantine.max_fraction=1.5"])


# ------------------------------------------------------------------ s3 section and the EU region guard

EMR = """
profile: emr
input: {path: 's3://fruits-eu/in'}
output: {path: 's3://fruits-eu/out'}
model: {weights: 's3://fruits-eu/weights/w.weights.h5'}
"""


def test_emr_profile_requires_an_eu_region(tmp_path):
    from fruitfeat.config.regions import EU_REGIONS

    with pytest.raises(ConfigError, match="s3.region must name the EU region"):
        load_config(write(tmp_path, EMR))
    for region in EU_REGIONS:
        assert load_config(write(tmp_path, EMR), [f"s3.region={region}"]).s3.region == region
    assert load_config(REPO / "conf/emr.yaml").s3.region in EU_REGIONS


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-9", "il-central-1", "me-central-1", "EU", ""])
def test_emr_profile_refuses_regions_outside_the_eu(tmp_path, region):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, EMR), [f"s3.region={region}"])
    message = str(err.value)
    assert "s3.region" in message and ("runs only in the EU" in message or "must name the EU region" in message)
    assert "eu-west-1" in message  # says what is allowed


@pytest.mark.parametrize("region", ["eu-west-2", "eu-central-2"])  # London, Zurich: in Europe, not in the EU
def test_emr_profile_refuses_london_and_zurich(tmp_path, region):
    from fruitfeat.config.regions import EU_REGIONS

    assert region not in EU_REGIONS
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, EMR), [f"s3.region={region}"])
    assert f"s3.region: region '{region}' is not allowed" in str(err.value)


def test_local_profile_needs_no_region_and_s3_defaults_are_empty(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert (config.s3.endpoint, config.s3.path_style_access, config.s3.region, config.s3.jars_dir) == (
        None, False, None, None,
    )  # fmt: skip
    assert load_config(write(tmp_path, MINIMAL), ["s3.region=us-east-1"]).s3.region == "us-east-1"


def test_s3_endpoint_and_jars_dir_are_validated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    overrides = ["s3.endpoint=http://127.0.0.1:5000/", "s3.jars_dir=jars", "s3.path_style_access=true"]
    config = load_config(write(tmp_path, MINIMAL), overrides)
    assert config.s3.endpoint == "http://127.0.0.1:5000" and config.s3.path_style_access is True
    assert config.s3.jars_dir == str(tmp_path / "jars")
    with pytest.raises(ConfigError, match="s3.endpoint: 'ftp://host' is not an http"):
        load_config(write(tmp_path, MINIMAL), ["s3.endpoint=ftp://host"])
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, MINIMAL + "s3: {endpoint: 'http://me:hunter2@127.0.0.1:5000'}\n"))
    assert "must not contain credentials" in str(err.value) and "hunter2" not in str(err.value)
    with pytest.raises(ConfigError, match="s3.bucket: unknown key"):
        load_config(write(tmp_path, MINIMAL), ["s3.bucket=x"])


def test_override_values_are_never_echoed_in_errors(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, MINIMAL), ["pca.k=0", "spark.app_name=hunter2-not-a-secret"])
    message = str(err.value)
    assert "with --set pca.k, spark.app_name" in message and "hunter2" not in message
