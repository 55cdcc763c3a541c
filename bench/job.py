"""One measurement of the benchmark, in its own process (fresh JVM and Python workers): prints one JSON line.

    python bench/job.py raw      '{"images": DIR, "n": 256, "image_size": 224}'
    python bench/job.py naive    '{"images": DIR, "out": DIR, "image_size": 224}'
    python bench/job.py pipeline '{"config": {...JobConfig...}}'
    python bench/job.py pca      '{"rows": 20000, "dim": 1280, "k": 50, "work": DIR}'
    python bench/job.py decode_engine '{"images": DIR, "n": 240, "image_size": 224}'

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


#: Inference batch sizes tried for the raw engines' headline figure (the best one is reported).
RAW_BATCHES = (1, 2, 4, 8, 16, 32, 64)
TF_BATCHES = (16, 64)
#: Batch sizes of the side-by-side single-thread workers (the layout of a Spark job: one worker per core).
WORKER_BATCHES = (1, 2, 4, 8, 16, 64)


def _best_batch(fn, images: np.ndarray, batches: tuple[int, ...]) -> tuple[dict[str, float], int]:
    """img/s at each batch size (best of two passes) and the winner: the reference end-to-end ratios are
    taken against must be the engine at its strongest setting, not at one fixed batch."""
    by_batch = {str(b): _timeit(fn, images, b, repeat=2) for b in batches}
    return by_batch, int(max(by_batch, key=by_batch.get))


def _side_by_side_worker(blob: bytes, images: np.ndarray, batches: tuple[int, ...], barrier, queue) -> None:
    """One single-thread ONNX Runtime process; all of them start each batch size together (barrier)."""
    from fruitfeat.featurize.onnx_export import OnnxInference

    session = OnnxInference(blob, 1)
    session(images[:8])  # warm-up
    rates = {}
    for batch in batches:
        barrier.wait(timeout=300)  # a sibling that died breaks the barrier instead of hanging the benchmark
        rates[str(batch)] = _timeit(session, images, batch, repeat=2)
    queue.put(rates)


def _together(target, arguments: list[tuple], timeout: float) -> list:
    """Run ``target(*args, barrier, queue)`` in one spawned process per ``arguments`` entry, started together
    (the barrier), and return what each put on the queue. Spawned, not forked: this process may have
    TensorFlow's threads running."""
    from multiprocessing import get_context

    ctx = get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(len(arguments))
    procs = [ctx.Process(target=target, args=(*args, barrier, queue)) for args in arguments]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=timeout) for _ in procs]
    for proc in procs:
        proc.join()
    return results


def side_by_side(blob: bytes, images: np.ndarray, processes: int, batches: tuple[int, ...]) -> dict[str, float]:
    """img/s of ``processes`` single-thread ONNX Runtime processes running together, by batch size.

    This is how a Spark job runs the engine (one Python worker per core, one thread each), so it is the
    engine's figure on the job's own layout, next to the one-process, all-threads figure. Spawned, not
    forked: this process has TensorFlow's threads running."""
    results = _together(_side_by_side_worker, [(blob, images, batches)] * processes, timeout=600)
    return {str(b): sum(r[str(b)] for r in results) for b in batches}


def raw(args: dict) -> dict:
    """The inference engines alone, in this one process, on decoded images and CORES threads."""
    from fruitfeat.featurize.decode import decode_image
    from fruitfeat.featurize.model import resolve_weights
    from fruitfeat.featurize.onnx_export import OnnxInference

    size, n = args["image_size"], args["n"]
    files = _files(args["images"])[:n]
    start = time.perf_counter()
    images = np.stack([decode_image(p.read_bytes(), size) for p in files])
    decode_per_image = (time.perf_counter() - start) / len(files)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(CORES)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from fruitfeat.featurize.model import (
        build_backbone,
        compile_inference,
        deserialize_weights,
    )

    payload = resolve_weights("random", size, 0, lambda uri: b"", runtime="onnxruntime")
    tf_payload = resolve_weights("random", size, 0, lambda uri: b"")
    model = build_backbone(size)
    model.set_weights(deserialize_weights(tf_payload.blob))
    tf_infer = compile_inference(model, size)
    out = {"images": len(images), "threads": CORES, "decode_ms_per_image": 1000 * decode_per_image}
    for name, fn, batches in (("tensorflow", tf_infer, TF_BATCHES),
                              ("onnxruntime", OnnxInference(payload.blob, CORES), RAW_BATCHES)):
        by_batch, best = _best_batch(fn, images, batches)
        out[f"{name}_by_batch_img_s"], out[f"{name}_best_batch"] = by_batch, best
        out[f"{name}_img_s"] = by_batch[str(best)]
    # fp32 against int8 on the job's layout, with the real network (`make weights` builds both files).
    for precision, path in args.get("precision_models", {}).items():
        by_batch = side_by_side(Path(path).read_bytes(), images, CORES, WORKER_BATCHES)
        out.setdefault("precision_workers", {})[precision] = {
            "model": path, "by_batch_img_s": by_batch, "img_s": max(by_batch.values()),
            "best_batch": int(max(by_batch, key=by_batch.get))}
    # The job's layout: CORES single-thread processes side by side (one Spark Python worker per core).
    by_batch = side_by_side(payload.blob, images, CORES, WORKER_BATCHES)
    out["onnxruntime_workers_by_batch_img_s"] = by_batch
    out["onnxruntime_workers_best_batch"] = int(max(by_batch, key=by_batch.get))
    out["onnxruntime_workers_img_s"] = max(by_batch.values())
    return out


def _decode_engine_worker(blob: bytes, files: list[str], size: int, draft: bool, barrier, queue) -> None:
    """One single-thread process reading, decoding and inferring its share of files at batch 2, as a worker."""
    from fruitfeat.featurize.decode import DecodeOptions, decode_image
    from fruitfeat.featurize.onnx_export import OnnxInference

    session, options = OnnxInference(blob, 1), DecodeOptions(jpeg_draft=draft)
    session(np.zeros((2, size, size, 3), np.uint8))  # warm-up
    barrier.wait(timeout=300)
    start, pending, nbytes = time.perf_counter(), [], 0
    for path in files:
        data = Path(path).read_bytes()
        nbytes += len(data)
        pending.append(decode_image(data, size, options))
        if len(pending) == 2:
            session(np.stack(pending))
            pending = []
    if pending:
        session(np.stack(pending))
    queue.put((time.perf_counter() - start, nbytes))


def decode_engine(args: dict) -> dict:
    """The job's ceiling on large photos, without Spark: CORES single-thread processes side by side, each
    reading, decoding (draft or full JPEG decode) and inferring its share of the files."""
    from fruitfeat.featurize.model import resolve_weights

    size = args["image_size"]
    files = [str(p) for p in _files(args["images"]) if not (args.get("distinct") and p.name.startswith("c"))]
    files = files[: args["n"]]
    blob = resolve_weights("random", size, 0, lambda uri: b"", runtime="onnxruntime").blob
    out = {"images": len(files)}
    for name, draft in (("draft", True), ("full", False)):
        results = _together(_decode_engine_worker, [(blob, files[i::CORES], size, draft) for i in range(CORES)], 1800)
        seconds = max(r[0] for r in results)
        out[f"{name}_img_s"] = len(files) / seconds
        out[f"{name}_mb_s"] = sum(r[1] for r in results) / 1e6 / seconds
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

    from fruitfeat.featurize.model import build_backbone

    start = time.perf_counter()
    model = build_backbone(size)
    bc_weights = spark.sparkContext.broadcast(model.get_weights())

    def model_fn():
        from fruitfeat.featurize.model import build_backbone

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
            "broadcast_bytes": m["weights"]["broadcast_bytes"], "runtime": m["config"]["model"]["runtime"],
            "featurize": m["featurize"], "store": m["store"], "features_path": result.features_path}


def _write_like_spark(data: np.ndarray, directory: Path, files: int) -> None:
    """``files`` Parquet files of one row group each, like a Spark job's output: one file of one row group
    is read by a single task, which would time one busy core instead of the method."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    for i, rows in enumerate(np.array_split(np.arange(len(data)), files)):
        values = pa.array(data[rows].reshape(-1))
        column = pa.FixedSizeListArray.from_arrays(values, data.shape[1]).cast(pa.list_(pa.float32()))
        pq.write_table(pa.table({"features": column}), directory / f"part-{i:05d}.parquet", row_group_size=len(rows))


#: Alternations of the PCA fits: on this shared machine a single warm fit of any of them varied by 30 %
#: (1.09 to 1.66 s for the same covariance fit), so each method gets three warm fits after its cold one.
PCA_ROUNDS = 4
PCA_METHODS = ("covariance", "spark_ml")


def _fit(method: str, df, k: int) -> np.ndarray:
    """Explained variance of one fit: fruitfeat's, or Spark ML's on the same rows as vectors."""
    if method == "covariance":
        from fruitfeat.reduce.pca import fit_pca

        return np.asarray(fit_pca(df, k).explained_variance)
    from pyspark.ml.feature import PCA
    from pyspark.ml.functions import array_to_vector

    vectors = df.select(array_to_vector("features").alias("v"))
    return PCA(k=k, inputCol="v", outputCol="p").fit(vectors).explainedVariance.toArray()


def pca(args: dict) -> dict:
    """covariance PCA vs Spark ML PCA on the same rows x dim float32 data, read back from Parquet.

    Alternating in one Spark application (each method in turn, three times): the first fit of each also warms
    the JVM (code generation, the ML classes), so each method's best time is compared and the worst
    (cold) times are kept alongside. The session has the job's Arrow settings (enabled, featurize.arrow_batch_size)."""
    from pyspark.sql import SparkSession

    from fruitfeat.config.sections import FeaturizeConfig

    rows, dim, k = args["rows"], args["dim"], args["k"]
    rng = np.random.default_rng(0)
    # Structured like CNN features: a decaying spectrum (low rank + noise), non-negative offsets.
    basis = rng.standard_normal((200, dim)).astype(np.float32)
    scales = (1.0 / np.arange(1, 201) ** 0.8).astype(np.float32)
    data = (rng.standard_normal((rows, 200)).astype(np.float32) * scales) @ basis
    data += 0.05 * rng.standard_normal((rows, dim)).astype(np.float32) + 1.0
    path = Path(args["work"]) / "pca_input"
    _write_like_spark(data, path, 2 * CORES)
    del data

    spark = SparkSession.builder.master(f"local[{CORES}]").appName("bench-pca")
    conf = {**SPARK_CONF, "spark.sql.execution.arrow.pyspark.enabled": "true",  # as the job's session
            "spark.sql.execution.arrow.maxRecordsPerBatch": str(FeaturizeConfig().arrow_batch_size)}
    for key, value in conf.items():
        spark = spark.config(key, value)
    spark = spark.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    frame = spark.read.parquet(f"file://{path}")
    frame.count()
    out = {"rows": rows, "dim": dim, "k": k, "input_files": 2 * CORES, "input_partitions": frame.rdd.getNumPartitions()}
    times: dict[str, list[float]] = {name: [] for name in PCA_METHODS}
    variance: dict[str, list[np.ndarray]] = {name: [] for name in PCA_METHODS}
    for name in PCA_METHODS * PCA_ROUNDS:
        start = time.perf_counter()
        explained = _fit(name, frame, k)
        times[name].append(time.perf_counter() - start)
        variance[name].append(explained)
    for name, seconds in times.items():
        out[f"{name}_runs_s"] = seconds
        out[f"{name}_s"] = min(seconds)
        out[f"{name}_worst_s"] = max(seconds)  # the first, normally: cold JVM
    out["speedup"] = out["spark_ml_s"] / out["covariance_s"]
    out["max_abs_explained_variance_diff"] = max(
        float(np.abs(a - b).max()) for a in variance["covariance"] for b in variance["spark_ml"])
    out["explained_variance_total"] = float(variance["covariance"][0].sum())
    spark.stop()
    return out


if __name__ == "__main__":
    mode, payload = sys.argv[1], json.loads(sys.argv[2])
    from incremental import compare, discover

    modes = {"raw": raw, "naive": naive, "pipeline": pipeline, "pca": pca, "decode_engine": decode_engine,
             "discover": discover, "compare": compare}
    result = modes[mode](payload)
    print("BENCH_RESULT " + json.dumps(result), flush=True)
