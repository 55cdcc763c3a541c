"""The converted model is kept between runs: same payload back, no TensorFlow on a hit, never a corrupt one."""

import json
import subprocess
import sys
import textwrap

import pytest

from fruitfeat.featurize import model as model_module
from fruitfeat.featurize.model import resolve_weights
from fruitfeat.featurize.payload_cache import PayloadCache, payload_key
from fruitfeat.pipeline import run_pipeline

from .conftest import TEST_IMAGE_SIZE, job_config


def local_cache(root) -> PayloadCache:
    def write(uri: str, data: bytes) -> None:
        path = root / uri.rsplit("/", 1)[-1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def read(uri: str) -> bytes:
        path = root / uri.rsplit("/", 1)[-1]
        if not path.exists():
            raise FileNotFoundError(uri)
        return path.read_bytes()

    return PayloadCache(str(root), read, write)


def refuse_to_build(*args, **kwargs):
    raise AssertionError("the model was built although the cache holds it")


@pytest.mark.parametrize("runtime", ["onnxruntime", "tensorflow"])
def test_a_stored_payload_comes_back_without_building_the_model(tmp_path, monkeypatch, runtime):
    cache = local_cache(tmp_path)
    first = resolve_weights("random", TEST_IMAGE_SIZE, 3, lambda uri: b"", runtime, cache)
    assert first.provenance["payload_cache"] == "stored"

    monkeypatch.setattr(model_module, "build_backbone", refuse_to_build)
    monkeypatch.setattr(model_module, "payload_from_model", refuse_to_build)
    again = resolve_weights("random", TEST_IMAGE_SIZE, 3, lambda uri: b"", runtime, cache)

    assert again.provenance["payload_cache"] == "hit"
    assert (again.blob, again.sha256, again.weights_sha256, again.runtime) == (
        first.blob, first.sha256, first.weights_sha256, first.runtime
    )
    assert {k: v for k, v in again.provenance.items() if k not in ("payload_cache",)} == {
        k: v for k, v in first.provenance.items() if k not in ("payload_cache",)
    }


def test_the_key_follows_what_determines_the_payload():
    base = payload_key({"weights": "file", "file_sha256": "a" * 64}, 224, "onnxruntime", 17)
    assert base == payload_key({"weights": "file", "file_sha256": "a" * 64}, 224, "onnxruntime", 17)
    others = {
        payload_key({"weights": "file", "file_sha256": "b" * 64}, 224, "onnxruntime", 17),
        payload_key({"weights": "file", "file_sha256": "a" * 64}, 160, "onnxruntime", 17),
        payload_key({"weights": "file", "file_sha256": "a" * 64}, 224, "tensorflow", None),
        payload_key({"weights": "file", "file_sha256": "a" * 64}, 224, "onnxruntime", 18),
        payload_key({"weights": "random", "seed": 0}, 224, "onnxruntime", 17),
    }
    assert base not in others and len(others) == 5


def test_weights_files_are_keyed_by_content_not_by_name(tmp_path, random_weights_file, monkeypatch):
    cache = local_cache(tmp_path / "cache")
    copy = tmp_path / "renamed.weights.h5"
    copy.write_bytes(random_weights_file.read_bytes())
    first = resolve_weights(str(random_weights_file), TEST_IMAGE_SIZE, 0, lambda u: open(u, "rb").read(), "onnxruntime", cache)
    monkeypatch.setattr(model_module, "build_backbone", refuse_to_build)
    renamed = resolve_weights(str(copy), TEST_IMAGE_SIZE, 0, lambda u: open(u, "rb").read(), "onnxruntime", cache)
    assert renamed.provenance["payload_cache"] == "hit" and renamed.blob == first.blob
    assert renamed.provenance["uri"] == str(copy)  # provenance describes this run's file, not the cached one's


def test_a_corrupted_entry_is_rebuilt_not_used(tmp_path, caplog):
    cache = local_cache(tmp_path)
    first = resolve_weights("random", TEST_IMAGE_SIZE, 0, lambda uri: b"", "onnxruntime", cache)
    (entry,) = tmp_path.glob("*.bin")
    entry.write_bytes(entry.read_bytes()[:-100])  # truncated, as by a copy that died half-way

    again = resolve_weights("random", TEST_IMAGE_SIZE, 0, lambda uri: b"", "onnxruntime", cache)

    assert again.provenance["payload_cache"] == "stored" and again.blob == first.blob
    assert "does not match its recorded sha256" in caplog.text
    assert entry.read_bytes() == first.blob  # repaired for the next run


def test_an_unwritable_cache_does_not_fail_the_run(tmp_path, caplog):
    def refuse(uri, data):
        raise PermissionError(f"read-only: {uri}")

    cache = PayloadCache(str(tmp_path), lambda uri: (_ for _ in ()).throw(FileNotFoundError(uri)), refuse)
    payload = resolve_weights("random", TEST_IMAGE_SIZE, 0, lambda uri: b"", "onnxruntime", cache)
    assert payload.blob and "could not store the converted model" in caplog.text


def test_a_cache_hit_leaves_the_driver_without_tensorflow(tmp_path):
    """The point of the cache: in a fresh interpreter, a hit imports neither TensorFlow nor the converter."""
    cache_dir = tmp_path / "cache"
    script = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        from fruitfeat.featurize.model import resolve_weights
        from tests.test_payload_cache import local_cache
        payload = resolve_weights("random", {TEST_IMAGE_SIZE}, 0, lambda uri: b"", "onnxruntime", local_cache(Path({str(cache_dir)!r})))
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx"))
        print(json.dumps({{"cache": payload.provenance["payload_cache"], "heavy": heavy[:5], "sha": payload.sha256}}))
        """
    )
    results = []
    for _ in range(2):  # the first run converts and stores, the second hits
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert results[0]["cache"] == "stored" and results[0]["heavy"] != []
    assert results[1] == {"cache": "hit", "heavy": [], "sha": results[0]["sha"]}


def test_successive_runs_share_the_cache_under_the_output(spark, sample_dataset, tmp_path):
    config = job_config(sample_dataset.root, tmp_path / "out", model={"weights": "random", "seed": 5, "runtime": "onnxruntime"})
    first = run_pipeline(config, spark)
    second = run_pipeline(config, spark)
    assert first.manifest["weights"]["payload_cache"] == "stored"
    assert second.manifest["weights"]["payload_cache"] == "hit"
    assert second.manifest["weights"]["broadcast_sha256"] == first.manifest["weights"]["broadcast_sha256"]
    assert sorted((tmp_path / "out" / "_cache" / "models").iterdir())  # beside runs/, not inside a run
    features = [
        {r.path: r.features for r in spark.read.parquet(run.features_path).collect()} for run in (first, second)
    ]
    assert features[0] == features[1]

    uncached = run_pipeline(job_config(sample_dataset.root, tmp_path / "out2",
                                       model={"weights": "random", "seed": 5, "runtime": "onnxruntime", "cache": False}), spark)
    assert uncached.manifest["weights"]["payload_cache"] == "off"
    assert not (tmp_path / "out2" / "_cache").exists()
