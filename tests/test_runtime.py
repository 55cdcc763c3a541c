"""model.runtime: onnxruntime gives the TensorFlow features, and its workers never import TensorFlow."""

import hashlib
import json
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from fruitfeat.config import ConfigError
from fruitfeat.featurize import model as model_module
from fruitfeat.featurize.decode import decode_image
from fruitfeat.featurize.model import inference_from_payload, resolve_weights
from fruitfeat.featurize.udf import featurize_images
from fruitfeat.io.listing import list_images
from fruitfeat.io.uris import local_path
from fruitfeat.pipeline import run_pipeline

from .conftest import TEST_IMAGE_SIZE, job_config

#: max |ONNX - TF| / max |TF feature| over the sample images. Measured ~1e-6 at 32 px with random
#: weights (~4.5e-6 at 224 px with the real weights): float32 round-off of a different kernel order.
RELATIVE_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def onnx_payload():
    return resolve_weights("random", TEST_IMAGE_SIZE, 0, read_bytes=lambda uri: b"", runtime="onnxruntime")


@pytest.fixture(scope="module")
def sample_images(sample_dataset) -> np.ndarray:
    return np.stack([decode_image(p.read_bytes(), TEST_IMAGE_SIZE) for p in sample_dataset.files])


def relative_difference(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max()) / float(np.abs(expected).max())


def test_onnx_payload_carries_the_same_weights(random_payload, onnx_payload):
    import onnx

    assert onnx_payload.runtime == "onnxruntime" and random_payload.runtime == "tensorflow"
    assert onnx_payload.weights_sha256 == random_payload.weights_sha256 == random_payload.sha256
    model = onnx.load_from_string(onnx_payload.blob)  # the blob is an ONNX model, not the npz
    assert [i.name for i in model.graph.input] == ["images"] and [o.name for o in model.graph.output] == ["features"]
    assert [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [
        "batch", TEST_IMAGE_SIZE, TEST_IMAGE_SIZE, 3
    ]
    assert onnx_payload.provenance == {**random_payload.provenance, "onnx": {"opset": 17, "converter": "tf2onnx 1.17.0"}}


def test_both_runtimes_give_the_same_features(random_payload, onnx_payload, sample_images):
    expected = inference_from_payload(random_payload)(sample_images)
    got = inference_from_payload(onnx_payload)(sample_images)
    assert got.shape == expected.shape == (len(sample_images), 1280) and got.dtype == np.float32
    assert len({row.tobytes() for row in expected}) == len(sample_images)  # no degenerate all-equal output
    assert relative_difference(got, expected) <= RELATIVE_TOLERANCE


def test_the_worker_cache_is_keyed_by_runtime(random_payload, onnx_payload):
    model_module._MODELS.clear()
    tf_infer = inference_from_payload(random_payload)
    ort_infer = inference_from_payload(onnx_payload)
    assert ort_infer is not tf_infer
    assert inference_from_payload(onnx_payload) is ort_infer
    # One model per worker: the TensorFlow one was dropped when the ONNX one was built.
    assert list(model_module._MODELS) == [("onnxruntime", onnx_payload.sha256, TEST_IMAGE_SIZE, 1)]


def test_an_onnxruntime_worker_never_imports_tensorflow(onnx_payload, sample_dataset, sample_images, random_payload, tmp_path):
    """What a Python worker does with the broadcast, in a fresh interpreter (Spark reuses warm workers)."""
    (tmp_path / "payload.pkl").write_bytes(pickle.dumps(onnx_payload))
    paths = [str(p) for p in sample_dataset.files[:5]]
    script = textwrap.dedent(
        f"""
        import json, pickle, sys
        import pandas as pd
        from fruitfeat.featurize.udf import featurize_batch
        from fruitfeat.featurize.model import inference_from_payload
        payload = pickle.load(open({str(tmp_path / "payload.pkl")!r}, "rb"))
        infer = inference_from_payload(payload)
        contents = pd.Series([open(p, "rb").read() for p in {paths!r}] + [b"junk"])
        out = featurize_batch(contents, infer, payload.image_size, batch_size=2)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx"))
        print(json.dumps({{"heavy": heavy, "reasons": out["error_reason"].tolist(),
                           "features": [None if f is None else f.tolist() for f in out["features"]]}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["reasons"] == [None] * 5 + ["not_an_image"]
    assert result["features"][5] is None
    # The other process's features are TensorFlow's for the same images (sample_images is in file order).
    got = np.array(result["features"][:5], dtype=np.float32)
    expected = inference_from_payload(random_payload)(sample_images[:5])
    assert relative_difference(got, expected) <= RELATIVE_TOLERANCE


def test_the_udf_under_onnxruntime_matches_tensorflow(spark, sample_dataset, random_payload, onnx_payload):
    images = list_images(spark, f"file://{sample_dataset.root}", ["jpg"]).repartition(3)
    results = {}
    for payload in (random_payload, onnx_payload):
        handle = spark.sparkContext.broadcast(payload)
        try:
            rows = featurize_images(images, handle, batch_size=4).select("path", "features").collect()
        finally:
            handle.unpersist()
        results[payload.runtime] = {r.path: np.asarray(r.features, dtype=np.float32) for r in rows}
    assert set(results["tensorflow"]) == set(results["onnxruntime"]) == {f"file:{p}" for p in sample_dataset.files}
    paths = sorted(results["tensorflow"])
    expected = np.stack([results["tensorflow"][p] for p in paths])
    got = np.stack([results["onnxruntime"][p] for p in paths])
    assert relative_difference(got, expected) <= RELATIVE_TOLERANCE


@pytest.mark.slow
def test_pipeline_end_to_end_under_onnxruntime(spark, sample_dataset, random_payload, tmp_path):
    config = job_config(
        sample_dataset.root,
        tmp_path,
        model={"weights": "random", "seed": 0, "runtime": "onnxruntime"},
        output={"path": str(tmp_path), "keep_raw_features": True},
    )
    result = run_pipeline(config, spark)
    manifest = result.manifest
    assert manifest["status"] == "complete"
    assert manifest["counts"] == {"listed": 18, "featurized": 18, "quarantined": 0}
    assert manifest["weights"]["runtime"] == "onnxruntime" and manifest["weights"]["onnx"]["opset"] == 17
    assert manifest["outputs"]["onnx_model"] == f"{result.run_path}/backbone.onnx"
    onnx_blob = (local_path(result.run_path) / "backbone.onnx").read_bytes()  # the model `fruitfeat predict` runs
    assert manifest["weights"]["broadcast_sha256"] == hashlib.sha256(onnx_blob).hexdigest()
    raw = spark.read.parquet(f"{result.run_path}/raw_features").toPandas()
    assert sorted(raw["path"]) == sorted(f"file:{p}" for p in sample_dataset.files)

    # The features equal TensorFlow's on the same decoded images.
    paths = raw["path"].tolist()
    images = np.stack([decode_image(open(p.removeprefix("file:"), "rb").read(), TEST_IMAGE_SIZE) for p in paths])
    expected = inference_from_payload(random_payload)(images)
    got = np.stack(raw["features"].map(lambda f: np.asarray(f, dtype=np.float32)).tolist())
    assert relative_difference(got, expected) <= RELATIVE_TOLERANCE
    assert pd.read_parquet(local_path(result.features_path))["features"].map(len).eq(config.pca.k).all()


def test_runtime_is_validated_and_an_onnx_model_needs_onnxruntime(tmp_path):
    assert job_config(tmp_path, tmp_path).model.runtime == "onnxruntime"
    with pytest.raises(ConfigError, match="model.runtime"):
        job_config(tmp_path, tmp_path, model={"weights": "random", "runtime": "pytorch"})
    with pytest.raises(ConfigError, match="an .onnx model runs with model.runtime onnxruntime"):
        job_config(tmp_path, tmp_path, model={"weights": str(tmp_path / "m.onnx"), "runtime": "tensorflow"})
    onnx = job_config(tmp_path, tmp_path, model={"weights": str(tmp_path / "m.onnx")}).model
    assert (onnx.weights, onnx.runtime) == (f"file://{tmp_path}/m.onnx", "onnxruntime")
    with pytest.raises(ConfigError, match="neither 'imagenet', 'random'"):
        job_config(tmp_path, tmp_path, model={"weights": str(tmp_path / "m.h5")})
