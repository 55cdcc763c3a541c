"""``fruitfeat store``: what the feature store holds, merging its segments, and erasing images at once.

``--forget`` is the right to erasure (docs/gdpr.md): the segments holding the given paths are
rewritten without them and committed as a new version; the old segments are deleted with the commit.
Delete the photos from the input too, or the next run featurizes them again.
"""

from __future__ import annotations

import argparse
import logging

from pyspark.sql import functions as F

from fruitfeat.config import load_config
from fruitfeat.io.listing import hadoop_path_string
from fruitfeat.io.uris import normalize_location
from fruitfeat.io.writer import new_run_id
from fruitfeat.store.table import STORE_COLUMNS, FeatureStore, StoreVersion, segment_name

log = logging.getLogger("fruitfeat")


def image_path(value: str) -> str:
    """A path as the user gives it (local or S3) in the form the store keys rows by (``binaryFile``'s)."""
    return hadoop_path_string(normalize_location(value))


def forget(store: FeatureStore, paths: list[str]) -> tuple[StoreVersion, dict[str, int]]:
    """Remove every row of ``paths`` from the store; the new version, and the rows removed per path."""
    base = store.current()
    wanted = sorted({image_path(p) for p in paths})
    stored = store.read(base)
    hits = stored.where(F.col("path").isin(*wanted)).groupBy("segment", "path").count().collect()
    found: dict[str, int] = {}
    for row in hits:
        found[row["path"]] = found.get(row["path"], 0) + row["count"]
    if not hits:
        return base, found
    losing = {row["segment"] for row in hits}
    run_id = new_run_id()
    kept = stored.where(F.col("segment").isin(*losing) & ~F.col("path").isin(*wanted)).select(*STORE_COLUMNS)
    rewritten = store.write_segment(kept, segment_name(base, run_id, "forget"))
    segments = tuple(s for s in base.segments if s.name not in losing) + ((rewritten,) if rewritten else ())
    version = store.commit(base, base.identity, segments, run_id, {"forgotten": sum(found.values())})
    return version, found


def compact(store: FeatureStore) -> StoreVersion:
    """Merge all segments into one (a run merges on its own past ``store.compact_after_segments``)."""
    base = store.current()
    if len(base.segments) < 2:
        return base
    run_id = new_run_id()
    merged = store.write_segment(store.read_rows(base.segments), segment_name(base, run_id, "merged"))
    return store.commit(base, base.identity, (merged,) if merged else (), run_id, {"merged": len(base.segments)})


def describe(version: StoreVersion, root: str) -> str:
    if version.number == 0:
        return f"feature store {root}: empty (no run has committed yet)"
    identity = version.identity or {}
    return (f"feature store {root}: version {version.number} by {version.run_id}, {version.rows} rows in "
            f"{len(version.segments)} segment(s); model sha256 {str(identity.get('weights_sha256'))[:12]}, "
            f"{identity.get('precision')}, {identity.get('image_size')} px")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fruitfeat store", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the job's YAML file: the store is store.path")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--forget", nargs="+", metavar="PATH", help="erase these images' rows now (GDPR)")
    action.add_argument("--compact", action="store_true", help="merge all segments into one")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    from fruitfeat.session import build_spark_session  # after validation: Spark imports slowly

    store = FeatureStore(build_spark_session(config), config.store_path)
    if args.forget:
        version, found = forget(store, args.forget)
        for path in sorted({image_path(p) for p in args.forget}):
            print(f"{'forgotten' if path in found else 'not in the store'}: {path}")
        print(f"{sum(found.values())} row(s) erased; {describe(version, store.root)}")
    elif args.compact:
        print(describe(compact(store), store.root))
    else:
        print(describe(store.current(), store.root))
    return 0
