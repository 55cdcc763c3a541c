"""``fruitfeat runs``: what is in an output location, and removal of runs that never completed.

A run directory without ``_RUN_COMPLETE`` is a run that died (or is still running); a rejected run
kept its errors table for inspection. Neither is ever read through ``_LATEST``, so removing them
only frees space; the age threshold keeps a run that is still being written out of harm's way.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone

from fruitfeat.io import storage
from fruitfeat.io.uris import is_remote, normalize_location
from fruitfeat.io.writer import LATEST, SUCCESS


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    path: str
    status: str
    age_hours: float | None


def _age_hours(run_id: str, now: datetime) -> float | None:
    try:
        started = datetime.strptime(run_id.split("-")[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return (now - started).total_seconds() / 3600


def _manifest_status(spark, path: str) -> str | None:
    uri = storage.join(path, "manifest.json")
    if not storage.exists(spark, uri):
        return None
    try:
        return json.loads(storage.read_text(spark, uri)).get("status")
    except ValueError:  # a manifest cut short: the run did not complete
        return None


def list_runs(output: str, spark=None, now: datetime | None = None) -> list[RunInfo]:
    now = now or datetime.now(timezone.utc)
    latest_uri = storage.join(output, LATEST)
    published = json.loads(storage.read_text(spark, latest_uri))["run_id"] if storage.exists(spark, latest_uri) else None
    runs = []
    for run_id in storage.list_names(spark, storage.join(output, "runs")):
        path = storage.join(output, "runs", run_id)
        if run_id == published:
            status = "published"
        elif storage.exists(spark, storage.join(path, SUCCESS)):
            status = "complete"
        else:  # a rejected run's manifest says so; anything else stopped before it was complete
            status = "rejected" if _manifest_status(spark, path) == "rejected" else "incomplete"
        runs.append(RunInfo(run_id, path, status, _age_hours(run_id, now)))
    return runs


def clean_runs(runs: list[RunInfo], older_than_hours: float, spark=None, dry_run: bool = False) -> list[RunInfo]:
    """Delete incomplete and rejected runs older than the threshold; never a complete or published one."""
    doomed = [
        r for r in runs
        if r.status in ("incomplete", "rejected") and r.age_hours is not None and r.age_hours >= older_than_hours
    ]
    if not dry_run:
        for run in doomed:
            storage.delete_tree(spark, run.path)
    return doomed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fruitfeat runs", description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="data/output", help="the job's output.path (local or s3a://)")
    parser.add_argument("--clean", action="store_true", help="delete incomplete and rejected runs")
    parser.add_argument("--older-than", type=float, default=6.0, metavar="HOURS", help="only runs this old (default 6)")
    parser.add_argument("--dry-run", action="store_true", help="with --clean: say what would be deleted")
    args = parser.parse_args(argv)
    output = normalize_location(args.output)
    spark = None
    if is_remote(output):
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.master("local[1]").appName("fruitfeat-runs").getOrCreate()
    runs = list_runs(output, spark)
    if not runs:
        print(f"no runs under {output}")
    for run in runs:
        age = f"{run.age_hours:6.1f} h" if run.age_hours is not None else "      ?"
        print(f"{run.status:<10} {age}  {run.run_id}")
    if args.clean:
        removed = clean_runs(runs, args.older_than, spark, args.dry_run)
        verb = "would delete" if args.dry_run else "deleted"
        for run in removed:
            print(f"{verb} {run.status} run {run.run_id}")
        print(f"{verb} {len(removed)} run(s) older than {args.older_than:g} h", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
