"""One measurement of the benchmark, in its own process (fresh JVM and Python workers): prints one JSON line.

    python bench/job.py raw      '{"images": DIR, "n": 256, "image_size": 224}'
    python bench/job.py naive    '{"images": DIR, "out": DIR, "image_size": 224}'
    python bench/job.py pipeline '{"config": {...JobConfig...}}'
    python bench/job.py pca      '{"rows": 20000, "dim": 1280, "k": 50, "work": DIR}'

Run by bench/run_bench.py, which samples the memory of this process and its children.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

CORES = int(os.environ.get("BENCH_CORES", "2"))
SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": str(CORES),
    "spark.driver.memory": "4g",
}


def _files(root: str) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*.jpg"))


def _timeit(fn, images: np.ndarray, batch: int, repeat: int = 1) -> float:
    fn(images[:batch])  # warm-up (graph tracing, allocator)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(0, len(images), batch):
            fn(images[i : i + batch])
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def raw(args: dict) -> dict:
    """The inference engines alone, in this one process, on decoded images and CORES threads."""
    from fruitfeat.decode import decode_image
    from fruitfeat.model import resolve_weights
    from fruitfeat.onnx_export import OnnxInference

    size, n = args["image_size"], args["n"]
    files = _files(args["images"])[:n]
    start = time.perf_counter()
    images = np.stack([decode_image(p.read_bytes(), size) for p in files])
    decode_per_image = (time.perf_counter() - start) / len(files)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(CORES)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from fruitfeat.model import build_backbone, compile_inference, deserialize_weights

    payload = resolve_weights("random", size, 0, lambda uri: b"", runtime="onnxruntime")
    tf_payload = resolve_weights("random", size, 0, lambda uri: b"")
    model = build_backbone(size)
    model.set_weights(deserialize_weights(tf_payload.blob))
    tf_infer = compile_inference(model, size)
    out = {"images": len(images), "decode_ms_per_image": 1000 * decode_per_image}
    out["tensorflow_img_s"] = _timeit(tf_infer, images, 64)
    out["onnxruntime_img_s"] = _timeit(OnnxInference(payload.blob, CORES), images, 64)
    # Knobs of one Spark worker (one core): threads and inference batch size.
    sweep = {}
    small = images[: min(len(images), 128)]
    for threads in (1, CORES):
        for batch in (16, 64, 128):
            sweep[f"ort threads={threads} batch={batch}"] = _timeit(OnnxInference(payload.blob, threads), small, batch)
    out["onnxruntime_sweep_img_s"] = sweep
    return out


def naive(args: dict) -> dict:
    """The course notebook: Series pandas UDF, Keras model built per task, model.predict per Arrow batch.

    Spark defaults as the notebook had them (Arrow batches of 10,000 rows, 4 MiB open cost).
    """
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = SparkSession.builder.master(f"local[{CORES}]").appName("bench-naive")
    for key, value in {**SPARK_CONF, "spark.sql.execution.arrow.pyspark.enabled": "true"}.items():
        spark = spark.config(key, value)
    spark = spark.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    size = args["image_size"]

    from fruitfeat.model import build_backbone

    start = time.perf_counter()
    model = build_backbone(size)
    bc_weights = spark.sparkContext.broadcast(model.get_weights())

    def model_fn():
        from fruitfeat.model import build_backbone

        new_model = build_backbone(size)
        new_model.set_weights(bc_weights.value)
        return new_model

    def preprocess(content):
        import io

        from keras.applications.mobilenet_v2 import preprocess_input
        from keras.utils import img_to_array
        from PIL import Image

        img = Image.open(io.BytesIO(content)).convert("RGB").resize([size, size])
        return preprocess_input(img_to_array(img))

    def featurize_series(model, content_series):
        inputs = np.stack(content_series.map(preprocess))
        preds = model.predict(inputs, verbose=0)
        return __import__("pandas").Series([p.flatten() for p in preds])

    @F.pandas_udf("array<float>", F.PandasUDFType.SCALAR_ITER)  # as in the notebook
    def featurize_udf(content_series_iter):
        model = model_fn()
        for content_series in content_series_iter:
            yield featurize_series(model, content_series)

    setup = time.perf_counter() - start
    files = [f"file://{p}" for p in _files(args["images"])]
    start = time.perf_counter()
    images = spark.read.format("binaryFile").load(files)
    images.select("path", featurize_udf("content").alias("features")).write.mode("overwrite").parquet(args["out"])
    seconds = time.perf_counter() - start
    rows = spark.read.parquet(args["out"]).count()
    spark.stop()
    return {"images": rows, "seconds": seconds, "img_s": rows / seconds, "driver_setup_s": setup,
            "partitions": None}


def pipeline(args: dict) -> dict:
    from fruitfeat.config import config_from_dict
    from fruitfeat.pipeline import run_pipeline

    config = config_from_dict(args["config"], "bench")
    start = time.perf_counter()
    result = run_pipeline(config)
    total = time.perf_counter() - start
    m = result.manifest
    return {"seconds": total, "stage_seconds": m["stage_seconds"], "counts": m["counts"],
            "model_builds": len(m["model_builds"]), "broadcast_bytes": m["weights"]["broadcast_bytes"],
            "runtime": m["config"]["model"]["runtime"]}


def pca(args: dict) -> dict:
    """covariance PCA vs Spark ML PCA on the same rows x dim float32 data, read back from Parquet."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql import SparkSession

    from fruitfeat.pca import fit_pca

    rows, dim, k = args["rows"], args["dim"], args["k"]
    rng = np.random.default_rng(0)
    # Structured like CNN features: a decaying spectrum (low rank + noise), non-negative offsets.
    basis = rng.standard_normal((200, dim)).astype(np.float32)
    scales = (1.0 / np.arange(1, 201) ** 0.8).astype(np.float32)
    data = (rng.standard_normal((rows, 200)).astype(np.float32) * scales) @ basis
    data += 0.05 * rng.standard_normal((rows, dim)).astype(np.float32) + 1.0
    path = Path(args["work"]) / "pca_input.parquet"
    values = pa.array(data.reshape(-1))
    column = pa.FixedSizeListArray.from_arrays(values, dim).cast(pa.list_(pa.float32()))
    pq.write_table(pa.table({"features": column}), path)
    del data, values, column

    spark = SparkSession.builder.master(f"local[{CORES}]").appName("bench-pca")
    for key, value in SPARK_CONF.items():
        spark = spark.config(key, value)
    spark = spark.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.read.parquet(f"file://{path}")
    df.count()
    out = {"rows": rows, "dim": dim, "k": k}
    variance = {}
    for method in ("covariance", "spark_ml"):
        start = time.perf_counter()
        fitted = fit_pca(df, k, rows=rows, method=method)
        out[f"{method}_s"] = time.perf_counter() - start
        variance[method] = np.asarray(fitted.explained_variance)
    out["speedup"] = out["spark_ml_s"] / out["covariance_s"]
    out["max_abs_explained_variance_diff"] = float(np.abs(variance["covariance"] - variance["spark_ml"]).max())
    out["explained_variance_total"] = float(variance["covariance"].sum())
    spark.stop()
    del pd
    return out


if __name__ == "__main__":
    mode, payload = sys.argv[1], json.loads(sys.argv[2])
    result = {"raw": raw, "naive": naive, "pipeline": pipeline, "pca": pca}[mode](payload)
    print("BENCH_RESULT " + json.dumps(result), flush=True)
