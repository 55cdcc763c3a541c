"""The feature store's table: segments of Parquet rows, and a log of committed versions.

Under the store's root::

    segments/<target>-<run_id>-<kind>/   Parquet rows, written once (new rows, or rows kept or merged)
    _log/<version>.json                  one committed version: its segments and the model identity

A version file is written last and only if its number is still free (``storage.create_new``), so a
version is all or nothing and two runs never both commit the same one: the later fails with the
reason. Readers take the highest version. A segment's name starts with the only version that can
commit it (its run's base version + 1), so once that number is taken, a segment it does not list is
a leftover of a failed or superseded run and is deleted; segments of runs still working towards a
higher version are left alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fruitfeat.errors import StoreConflictError
from fruitfeat.io import storage
from fruitfeat.io.writer import STAGING_OPTIONS

#: One row per image file that was read: its features, or why it has none.
STORE_SCHEMA = (
    "path string, label string, split string, length long, modification_time timestamp, "
    "features binary, error_reason string, error_message string"
)
STORE_COLUMNS = ("path", "label", "split", "length", "modification_time", "features", "error_reason", "error_message")
#: What identifies one version of one file: a row is reused only while all three match the listing.
FILE_KEY = ["path", "length", "modification_time"]
LOG_DIR = "_log"
SEGMENTS_DIR = "segments"
_DIGITS = 20  # zero-padded version numbers sort as text


@dataclass(frozen=True)
class Segment:
    name: str
    rows: int


@dataclass(frozen=True)
class StoreVersion:
    number: int  #: 0: the empty store, nothing committed yet
    identity: dict[str, Any] | None = None  #: the model every row was computed with
    segments: tuple[Segment, ...] = ()
    run_id: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.segments)


class FeatureStore:
    """A store at ``root`` (a local path URI or an object-store URI), read and committed from the driver."""

    def __init__(self, spark: SparkSession, root: str):
        self.spark, self.root = spark, root.rstrip("/")

    def _log_uri(self, number: int) -> str:
        return storage.join(self.root, LOG_DIR, f"{number:0{_DIGITS}d}.json")

    def segment_uri(self, name: str) -> str:
        return storage.join(self.root, SEGMENTS_DIR, name)

    def current(self) -> StoreVersion:
        """The highest committed version (version 0 when nothing was ever committed)."""
        numbers = [int(n[:-5]) for n in storage.list_names(self.spark, storage.join(self.root, LOG_DIR))
                   if n.endswith(".json") and n[:-5].isdigit()]
        return self.version(max(numbers)) if numbers else StoreVersion(0)

    def version(self, number: int) -> StoreVersion:
        doc = json.loads(storage.read_text(self.spark, self._log_uri(number)))
        return StoreVersion(doc["version"], doc["identity"], tuple(Segment(**s) for s in doc["segments"]),
                            doc["run_id"], doc.get("counts", {}))

    def read(self, version: StoreVersion) -> DataFrame:
        """Every row of ``version``, with the ``segment`` it is stored in."""
        if not version.segments:
            return self.spark.createDataFrame([], f"{STORE_SCHEMA}, segment string")
        uris = [self.segment_uri(s.name) for s in version.segments]
        rows = self.spark.read.schema(STORE_SCHEMA).parquet(*uris)
        segment = F.regexp_extract(F.col("_metadata.file_path"), f"/{SEGMENTS_DIR}/([^/]+)/[^/]+$", 1)
        return rows.select(*STORE_COLUMNS, segment.alias("segment"))

    def read_rows(self, segments: tuple[Segment, ...]) -> DataFrame:
        """The rows of ``segments``, without the segment column."""
        if not segments:
            return self.spark.createDataFrame([], STORE_SCHEMA)
        return self.spark.read.schema(STORE_SCHEMA).parquet(*(self.segment_uri(s.name) for s in segments))

    def write_segment(self, rows: DataFrame, name: str) -> Segment | None:
        """Write ``rows`` as a new segment; None (and nothing left behind) when there are none."""
        uri = self.segment_uri(name)
        rows.select(*STORE_COLUMNS).write.mode("errorifexists").options(**STAGING_OPTIONS).parquet(uri)
        count = self.spark.read.parquet(uri).count()  # from the Parquet footers
        if count == 0:
            storage.delete_tree(self.spark, uri)
            return None
        return Segment(name, count)

    def commit(self, base: StoreVersion, identity: dict[str, Any], segments: tuple[Segment, ...], run_id: str,
               counts: dict[str, int]) -> StoreVersion:
        """Commit ``segments`` as version ``base.number + 1``, or fail if another run took that number."""
        number = base.number + 1
        document = {
            "version": number,
            "base_version": base.number,
            "run_id": run_id,
            "committed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "identity": identity,
            "segments": [{"name": s.name, "rows": s.rows} for s in segments],
            "rows": sum(s.rows for s in segments),
            "counts": counts,
        }
        text = json.dumps(document, indent=2, sort_keys=True) + "\n"
        if not storage.create_new(self.spark, self._log_uri(number), text.encode("utf-8")):
            winner = self.version(number).run_id
            raise StoreConflictError(
                f"the feature store {self.root} changed while run {run_id} ran: version {number} was committed "
                f"by run {winner}. Nothing of run {run_id} was committed or published; run the job again."
            )
        committed = StoreVersion(number, identity, segments, run_id, counts)
        self.vacuum(committed)
        return committed

    def vacuum(self, version: StoreVersion) -> list[str]:
        """Delete the segments no version can list any more (failed, superseded or forgotten rows)."""
        listed = {s.name for s in version.segments}
        deleted = []
        for name in storage.list_names(self.spark, storage.join(self.root, SEGMENTS_DIR)):
            prefix = name.split("-", 1)[0]
            if name not in listed and prefix.isdigit() and int(prefix) <= version.number:
                storage.delete_tree(self.spark, self.segment_uri(name))
                deleted.append(name)
        return deleted


def segment_name(base: StoreVersion, run_id: str, kind: str) -> str:
    """``<target version>-<run_id>-<kind>``: the version it is written for comes first (see the module)."""
    return f"{base.number + 1:0{_DIGITS}d}-{run_id}-{kind}"
