"""The featurize stage against the store: featurize only the files the store has no row for.

A run lists the input, compares it with the store's committed version (``store.changes``), featurizes
the new and changed files into a new segment, rewrites the segments that hold rows of changed or
deleted files without them, and hands the later stages the rows of every listed file. Nothing is
visible to other runs until ``commit_update``: a run that fails before it leaves the store as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruitfeat.errors import FruitfeatError, StoreConflictError
from fruitfeat.io.listing import ImageListing, read_files
from fruitfeat.store.changes import CHANGED, NEW, REMOVED, UNCHANGED, file_changes, reusable_rows
from fruitfeat.store.table import STORE_COLUMNS, FeatureStore, Segment, StoreVersion, segment_name

log = logging.getLogger("fruitfeat")


@dataclass(frozen=True)
class StoreUpdate:
    """The version a run will commit, and the rows the run's later stages read."""

    base: StoreVersion
    identity: dict[str, Any]
    segments: tuple[Segment, ...]
    counts: dict[str, int]  #: reused, featurized, changed, removed, merged
    rebuilt: str | None  #: why every file was featurized again, or None

    def summary(self, store: FeatureStore) -> dict[str, Any]:
        return {"path": store.root, "base_version": self.base.number, "rebuilt": self.rebuilt, **self.counts}


def model_identity(weights_sha256: str, image_size: int, precision: str, runtime: str,
                   decode: dict[str, Any]) -> dict[str, Any]:
    """Everything a stored row's features depend on besides the file: a change featurizes every file again."""
    return {"weights_sha256": weights_sha256, "image_size": image_size, "precision": precision,
            "runtime": runtime, "decode": decode}


def rebuild_reason(base: StoreVersion, identity: dict[str, Any], incremental: bool) -> str | None:
    if not incremental:
        return "store.incremental is false"
    if base.number == 0:
        return None  # an empty store: everything is new anyway
    if base.identity != identity:
        changed = sorted(k for k in identity if base.identity.get(k) != identity[k])
        return f"the model changed ({', '.join(changed)})"
    return None


def update_store(
    store: FeatureStore,
    listing: ImageListing,
    featurize: Callable[[DataFrame], DataFrame],
    identity: dict[str, Any],
    run_id: str,
    incremental: bool = True,
    compact_after: int = 20,
) -> StoreUpdate:
    """Write this run's segments (not yet committed) and return what its version will hold."""
    base = store.current()
    rebuilt = rebuild_reason(base, identity, incremental)
    if rebuilt:
        log.info("featurizing every file: %s", rebuilt)
    previous = base if rebuilt is None else StoreVersion(0)
    stored = store.read(previous)
    listed = listing.readable
    segments = list(previous.segments)
    counts = {"reused": 0, "featurized": 0, "changed": 0, "removed": 0, "merged": 0}

    if previous.segments:
        changes = file_changes(listed, stored).where(F.col("status") != UNCHANGED).collect()  # few, normally
        for status in (CHANGED, REMOVED):
            counts[status] = sum(1 for row in changes if row["status"] == status)
        counts["reused"] = previous.rows - counts["changed"] - counts["removed"]
        losing = {row["segment"] for row in changes if row["status"] in (CHANGED, REMOVED)}
        if losing:
            kept = reusable_rows(stored.where(F.col("segment").isin(*losing)), listed).select(*STORE_COLUMNS)
            segments = [s for s in segments if s.name not in losing]
            segments += _written(store.write_segment(kept, segment_name(base, run_id, "kept")))
        new_paths = [row["path"] for row in changes if row["status"] in (NEW, CHANGED)]
        images = read_files(store.spark, new_paths) if new_paths else None
    else:
        images = listing.images  # everything is new: the listing's own relation, listed once
    if images is not None:
        new = store.write_segment(featurize(images), segment_name(base, run_id, "new"))
        segments += _written(new)
        counts["featurized"] = new.rows if new else 0
    if len(segments) > compact_after:
        segments, counts["merged"] = _compact(store, base, run_id, segments)
    log.info("store: %(reused)d rows reused, %(featurized)d files featurized, %(changed)d changed, "
             "%(removed)d removed", counts)
    return StoreUpdate(base, identity, tuple(segments), counts, rebuilt)


def _written(segment: Segment | None) -> list[Segment]:
    return [segment] if segment else []


def _compact(store: FeatureStore, base: StoreVersion, run_id: str,
             segments: list[Segment]) -> tuple[list[Segment], int]:
    """Merge every segment but the largest into one: the count stays bounded, the bulk is not rewritten."""
    largest = max(segments, key=lambda s: s.rows)
    small = tuple(s for s in segments if s is not largest)
    merged = store.write_segment(store.read_rows(small), segment_name(base, run_id, "merged"))
    log.info("store: %d segments merged into one", len(small))
    return [largest, *_written(merged)], len(small)


def staged_rows(store: FeatureStore, update: StoreUpdate) -> DataFrame:
    """The rows of every listed, readable file, in the form the later stages read (the file's ``size``)."""
    rows = store.read_rows(update.segments)
    return rows.select("path", "label", "split", F.col("length").cast("int").alias("size"),
                       "features", "error_reason", "error_message")


def commit_update(store: FeatureStore, update: StoreUpdate, run_id: str, quarantined: int) -> StoreVersion:
    counts = {**update.counts, "quarantined": quarantined}
    version = store.commit(update.base, update.identity, update.segments, run_id, counts)
    log.info("store: committed version %d (%d rows)", version.number, version.rows)
    return version


@contextmanager
def store_unchanged(store: FeatureStore, update: StoreUpdate, run_id: str) -> Iterator[None]:
    """Report a failure as a conflict when another run committed meanwhile (its commit deletes the
    segments it superseded, which this run may have been reading)."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, FruitfeatError):
            raise
        current = store.current()
        if current.number != update.base.number:
            raise StoreConflictError(
                f"the feature store {store.root} changed while run {run_id} ran (version {current.number} by run "
                f"{current.run_id}); nothing of run {run_id} was committed or published: run the job again "
                f"({type(exc).__name__})"
            ) from exc
        raise
