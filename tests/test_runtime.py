"""model.runtime: onnxruntime gives the TensorFlow features, and its workers never import TensorFlow."""

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


def test_onnx_payload_carries_the_same_weights(random_payload, onnx_payload):
    assert onnx_payload.runtime == "onnxruntime" and random_payload.runtime == "tensorflow"
    assert onnx_payload.weights_sha256 == random_payload.weights_sha256 == random_payload.sha256
    assert onnx_payload.sha256 != random_payload.sha256  # the blob is the ONNX model, not the npz
    assert onnx_payload.blob[:64] != random_payload.blob[:64]
    assert onnx_payload.provenance["onnx"]["opset"] == 17
    assert onnx_payload.provenance["source"] == "random"


def test_both_runtimes_give_the_same_features(random_payload, onnx_payload, sample_images):
    tf_infer, _ = inference_from_payload(random_payload)
    ort_infer, _ = inference_from_payload(onnx_payload)
    expected, got = tf_infer(sample_images), ort_infer(sample_images)
    assert got.shape == expected.shape == (len(sample_images), 1280) and got.dtype == np.float32
    scale = float(np.abs(expected).max())
    assert scale > 0
    assert float(np.abs(got - expected).max()) / scale <= RELATIVE_TOLERANCE


def test_the_worker_cache_is_keyed_by_runtime(random_payload, onnx_payload):
    model_module._MODELS.clear()
    tf_infer, built_tf = inference_from_payload(random_payload)
    ort_infer, built_ort = inference_from_payload(onnx_payload)
    again, built_again = inference_from_payload(onnx_payload)
    assert built_tf and built_ort and not built_again
    assert again is ort_infer and ort_infer is not tf_infer


def test_an_onnxruntime_worker_never_imports_tensorflow(onnx_payload, sample_dataset, tmp_path):
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
        infer, built = inference_from_payload(payload)
        contents = pd.Series([open(p, "rb").read() for p in {paths!r}] + [b"junk"])
        out = featurize_batch(contents, infer, payload.image_size, batch_size=2)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx"))
        print(json.dumps({{"built": built, "heavy": heavy, "reasons": out["error_reason"].tolist(),
                           "dims": [None if f is None else len(f) for f in out["features"]]}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["built"] and result["heavy"] == []
    assert result["reasons"] == [None] * 5 + ["not_an_image"]
    assert result["dims"] == [1280] * 5 + [None]


def test_the_udf_under_onnxruntime_matches_tensorflow(spark, sample_dataset, random_payload, onnx_payload):
    from fruitfeat.featurize.udf import featurize_images
    from fruitfeat.io.listing import list_images

    images = list_images(spark, f"file://{sample_dataset.root}", ["jpg"])
    results = {}
    for payload in (random_payload, onnx_payload):
        handle = spark.sparkContext.broadcast(payload)
        try:
            rows = featurize_images(images, handle, batch_size=4, partitions=3).select("path", "features").collect()
        finally:
            handle.unpersist()
        results[payload.runtime] = {r.path: np.asarray(r.features, dtype=np.float32) for r in rows}
    assert set(results["tensorflow"]) == set(results["onnxruntime"]) and len(results["tensorflow"]) == 18
    paths = sorted(results["tensorflow"])
    expected = np.stack([results["tensorflow"][p] for p in paths])
    got = np.stack([results["onnxruntime"][p] for p in paths])
    assert float(np.abs(got - expected).max()) / float(np.abs(expected).max()) <= RELATIVE_TOLERANCE


def test_pipeline_end_to_end_under_onnxruntime(spark, sample_dataset, tmp_path):
    config = job_config(
        sample_dataset.root,
        tmp_path,
        model={"weights": "random", "seed": 0, "runtime": "onnxruntime"},
        featurize={"image_size": TEST_IMAGE_SIZE, "batch_size": 8, "arrow_batch_size": 16, "partitions_per_core": 2},
        output={"path": str(tmp_path), "keep_raw_features": True},
    )
    result = run_pipeline(config, spark)
    manifest = result.manifest
    assert manifest["status"] == "complete"
    assert manifest["counts"] == {"listed": 18, "featurized": 18, "quarantined": 0}
    assert manifest["config"]["model"]["runtime"] == "onnxruntime"
    assert manifest["weights"]["onnx"]["opset"] == 17
    raw = spark.read.parquet(f"{result.run_path}/raw_features").toPandas()
    assert len(raw) == 18 and raw["error_reason"].isna().all()

    # The features equal TensorFlow's on the same decoded images.
    tf_payload = resolve_weights("random", TEST_IMAGE_SIZE, 0, read_bytes=lambda uri: b"")
    tf_infer, _ = inference_from_payload(tf_payload)
    paths = raw["path"].tolist()
    expected = tf_infer(np.stack([decode_image(open(p.removeprefix("file:"), "rb").read(), TEST_IMAGE_SIZE) for p in paths]))
    got = np.stack(raw["features"].map(lambda f: np.asarray(f, dtype=np.float32)).tolist())
    assert float(np.abs(got - expected).max()) / float(np.abs(expected).max()) <= RELATIVE_TOLERANCE
    assert pd.read_parquet(result.features_path)["features"].map(len).eq(config.pca.k).all()


def test_runtime_and_partitions_are_validated(tmp_path):
    assert job_config(tmp_path, tmp_path).model.runtime == "onnxruntime"
    with pytest.raises(ConfigError, match="model.runtime"):
        job_config(tmp_path, tmp_path, model={"weights": "random", "runtime": "pytorch"})
    with pytest.raises(ConfigError, match="featurize.partitions_per_core"):
        job_config(tmp_path, tmp_path, featurize={"partitions_per_core": -1})
