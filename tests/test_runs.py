import json
from datetime import datetime, timezone

from fruitfeat.cli import main
from fruitfeat.io.runs import clean_runs, list_runs

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)


def make_run(output, run_id, *files, status="complete"):
    run = output / "runs" / run_id
    (run / "features").mkdir(parents=True)
    for name in files:
        (run / name).write_text(json.dumps({"status": status}))
    return run


def test_runs_are_listed_with_their_status_and_stale_ones_cleaned(tmp_path, capsys):
    make_run(tmp_path, "20261123T100000Z-aaaaaaaa", "manifest.json", "_RUN_COMPLETE")  # published
    make_run(tmp_path, "20261123T090000Z-bbbbbbbb", "manifest.json", "_RUN_COMPLETE")  # complete
    make_run(tmp_path, "20261122T000000Z-cccccccc", "manifest.json", status="rejected")  # rejected, old
    make_run(tmp_path, "20261122T000000Z-dddddddd")  # died, old
    make_run(tmp_path, "20261122T000000Z-ffffffff", "manifest.json")  # died while publishing, old
    make_run(tmp_path, "20261123T115900Z-eeeeeeee")  # still running, young
    (tmp_path / "_LATEST").write_text(json.dumps({"run_id": "20261123T100000Z-aaaaaaaa"}))

    runs = list_runs(f"file://{tmp_path}", now=NOW)
    assert {r.run_id[-8:]: r.status for r in runs} == {
        "aaaaaaaa": "published", "bbbbbbbb": "complete", "cccccccc": "rejected",
        "dddddddd": "incomplete", "eeeeeeee": "incomplete", "ffffffff": "incomplete",
    }
    removed = clean_runs(runs, older_than_hours=6)
    assert sorted(r.run_id[-8:] for r in removed) == ["cccccccc", "dddddddd", "ffffffff"]
    assert sorted(p.name[-8:] for p in (tmp_path / "runs").iterdir()) == ["aaaaaaaa", "bbbbbbbb", "eeeeeeee"]

    assert main(["runs", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "published" in out and "20261123T115900Z-eeeeeeee" in out
