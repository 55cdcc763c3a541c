"""`make bench`: a daily run on a growing input. A full run on the largest set, then 1 % new images and
an incremental run on the same output, then a full run on the grown input to compare the published
features with. Between the two runs, finding the new files is timed both ways: the job's join of the
listing with the store, and Structured Streaming's file source (``trigger(availableNow=True)``
with a checkpoint, warmed on the first day's files).

The child functions (``discover``, ``compare``) run in bench/job.py's processes like the others."""

from __future__ import annotations

import os
import time
from pathlib import Path

NEW_SHARE = 0.01
#: The ``binaryFile`` source's schema: a streaming source needs it given.
BINARY_FILE_SCHEMA = "path string, modificationTime timestamp, length long, content binary"


def link_tree(source: Path, target: Path) -> int:
    """A copy of ``source`` made of hard links: the same bytes, other paths, no disk space."""
    count = 0
    for path in sorted(source.rglob("*")):
        if path.is_file():
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, dest)
            count += 1
    return count


def add_new_images(tree: Path, share: float = NEW_SHARE) -> int:
    """``share`` of the tree's images again under new names in their folders (new paths, as a day's uploads)."""
    files = sorted(p for p in tree.rglob("*.jpg") if p.is_file())
    step = max(1, round(1 / share))
    new = files[::step]
    for i, path in enumerate(new):
        os.link(path, path.with_name(f"new_{i:06d}.jpg"))
    return len(new)


def _session(cores: int):
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master(f"local[{cores}]").appName("fruitfeat-bench-discover")
            .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", str(cores))
            .config("spark.sql.files.openCostInBytes", "65536")  # as the job sets it (spark.files_open_cost_bytes)
            .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "100000").getOrCreate())


def _stream_new_paths(spark, tree: str, checkpoint: str, sink: str) -> tuple[float, int]:
    """One ``availableNow`` trigger of the file source: the files it has not seen (paths only, no content)."""
    from pyspark.sql import functions as F

    start = time.perf_counter()
    stream = (spark.readStream.format("binaryFile").schema(BINARY_FILE_SCHEMA)
              .option("pathGlobFilter", "*.jpg").load(f"{tree}/*/*")  # <split>/<Class>/<image>
              .select("path", F.length("path").alias("n")))
    query = (stream.writeStream.format("parquet").option("checkpointLocation", checkpoint)
             .option("path", sink).trigger(availableNow=True).start())
    query.awaitTermination()
    seconds = time.perf_counter() - start
    rows = sum(p["numInputRows"] for p in query.recentProgress)
    return seconds, rows


def discover(args: dict) -> dict:
    """Time finding the new files: the job's listing and join with the store, and the streaming source."""
    from pyspark.sql import functions as F

    from fruitfeat.io.listing import list_input
    from fruitfeat.store.changes import CHANGED, NEW, file_changes
    from fruitfeat.store.table import FeatureStore

    spark = _session(args["cores"])
    out: dict = {}
    if args.get("warm_stream"):  # the first day: the checkpoint learns every file there is
        out["stream_first_s"], out["stream_first_rows"] = _stream_new_paths(
            spark, args["tree"], args["checkpoint"], args["sink"])
        return out
    start = time.perf_counter()
    listing = list_input(spark, f"file://{args['tree']}", ["jpg"], 50 * 1024 * 1024)
    store = FeatureStore(spark, args["store"])
    changes = file_changes(listing.readable, store.read(store.current()))
    new = changes.where(F.col("status").isin(NEW, CHANGED)).count()
    out["antijoin_s"], out["antijoin_new"] = time.perf_counter() - start, new
    out["stream_s"], out["stream_new"] = _stream_new_paths(spark, args["tree"], args["checkpoint"], args["sink"])
    spark.stop()
    return out


def compare(args: dict) -> dict:
    """Largest difference between two published feature tables, joined on the image path."""
    import numpy as np

    spark = _session(args["cores"])
    a = spark.read.parquet(args["a"]).toPandas().set_index("path").sort_index()
    b = spark.read.parquet(args["b"]).toPandas().set_index("path").sort_index()
    same_paths = list(a.index) == list(b.index)
    diff = float(np.max(np.abs(np.stack(a["features"]) - np.stack(b["features"])))) if same_paths else None
    spark.stop()
    return {"rows": len(a), "same_paths": same_paths, "max_abs_diff": diff}


def run_incremental(base: Path, work: Path, args, log: Path, run_child, job_config) -> dict:
    """The daily case: full run, +1 % images, incremental run; the grown input's full run for reference."""
    tree, output = work / "growing", work / "growing-out"
    link_tree(base, tree)
    discover_args = {"cores": args.cores, "tree": str(tree), "store": f"file://{output}/store",
                     "checkpoint": str(work / "stream-checkpoint"), "sink": str(work / "stream-sink")}
    print(f"[bench] incremental: full run on {base.name} ...", flush=True)
    full = run_child("pipeline", {"config": job_config(tree, output, args, store=f"{output}/store")}, log)
    first = run_child("discover", {**discover_args, "warm_stream": True}, log)
    added = add_new_images(tree)
    print(f"[bench] incremental: {added} new images; finding them two ways ...", flush=True)
    found = run_child("discover", discover_args, log)
    print("[bench] incremental: the incremental run ...", flush=True)
    incremental = run_child("pipeline", {"config": job_config(tree, output, args, store=f"{output}/store")}, log)
    print("[bench] incremental: a full run on the grown input, for reference ...", flush=True)
    reference = run_child("pipeline", {"config": job_config(tree, work / "reference-out", args,
                                                             store=f"{work}/reference-out/store")}, log)
    same = run_child("compare", {"cores": args.cores, "a": incremental["features_path"],
                                 "b": reference["features_path"]}, log)
    return {"added": added, "full": full, "incremental": incremental, "reference": reference,
            "discover": {**first, **found}, "comparison": same}


def _job_s(run: dict) -> float:
    return run["seconds"] - run["stage_seconds"].get("session", 0.0)


def _written(run: dict) -> float:
    """The stages whose work grows with the featurized files: featurize, write, and the store's commit."""
    stages = run["stage_seconds"]
    return stages.get("featurize", 0.0) + stages.get("write", 0.0) + stages.get("commit", 0.0)


def incremental_table(results: dict) -> list[str]:
    """The incremental section of the generated block in docs/benchmarks.md (empty when not measured)."""
    inc = results.get("incremental")
    if not inc:
        return []
    full, again, ref = inc["full"], inc["incremental"], inc["reference"]
    d, cmp = inc["discover"], inc["comparison"]
    stage = lambda run, name: run["stage_seconds"].get(name, 0.0)  # noqa: E731
    rows = [f"| {name} | {stage(full, name):.1f} | {stage(again, name):.1f} | {stage(again, name) / max(stage(full, name), 1e-9):.2f} |"
            for name in ("list", "featurize", "account", "pca_fit", "write", "commit")]
    store = again["store"]
    return [
        f"A daily run on a growing input: a full run on {full['counts']['listed']:,} images, then "
        f"{inc['added']} new ones (1 %) and an incremental run on the same output:", "",
        "| stage, s | full run | incremental run | incremental / full |", "| --- | ---: | ---: | ---: |", *rows,
        f"| featurize + write + commit | {_written(full):.1f} | {_written(again):.1f} | {_written(again) / _written(full):.2f} |",
        f"| end to end (without starting Spark) | {_job_s(full):.1f} | {_job_s(again):.1f} | {_job_s(again) / _job_s(full):.2f} |",
        "",
        f"The incremental run featurized {store['featurized']} files and reused {store['reused']:,}; its published "
        f"features against a full run on the same input: {cmp['rows']:,} rows, same paths: {cmp['same_paths']}, "
        f"largest difference {cmp['max_abs_diff']:.1e}.",
        "",
        f"Finding the {inc['added']} new files among {full['counts']['listed'] + inc['added']:,}: the job's listing and "
        f"join with the store {d['antijoin_s']:.1f} s ({d['antijoin_new']} found); Structured Streaming's "
        f"file source, `availableNow` with a checkpoint, {d['stream_s']:.1f} s ({d['stream_new']} found; its first "
        f"trigger, over every file, {d['stream_first_s']:.1f} s).",
    ]
