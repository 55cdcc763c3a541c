"""``make report``: one self-contained HTML page per run (``runs/<run_id>/report.html``).

It is mailed and attached to tickets, so the plots are embedded PNGs and nothing is fetched. It reads
only the run's files; a missing plot those files can give is drawn on the fly. Weights that are not
ImageNet's get a warning box: every number on the page depends on them.
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fruitfeat.errors import PredictSetupError
from fruitfeat.recognition.predict import read_json, resolve_run_dir

REPORT_FILE = "report.html"
PLOT_TITLES = {
    "explained_variance": "PCA explained variance",
    "pca_scatter": "PCA features 1-2 by class",
    "confusion_matrix": "Confusion matrix (Test)",
}

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1a1a1a}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
th{background:#f0f3f7}td:first-child,th:first-child{text-align:left}
.warn{background:#fff3cd;border:2px solid #d39e00;padding:.8rem 1rem;font-weight:bold;margin:1rem 0}
.ok{background:#e8f5e9;border:1px solid #66bb6a;padding:.6rem 1rem;margin:1rem 0}
img{max-width:100%;border:1px solid #ddd;margin:.5rem 0 1.5rem}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def weights_section(weights: dict[str, Any]) -> str:
    source = weights.get("source", "unknown")
    detail = str(weights.get("description") or weights.get("warning") or weights.get("uri") or "").rstrip(". ")
    detail = f"{detail}." if detail else ""
    if source == "imagenet":
        return f'<div class="ok">Weights: ImageNet MobileNetV2. {_e(detail)}</div>'
    return (
        f'<div class="warn">WEIGHTS ARE NOT IMAGENET: source = {_e(source).upper()}. {_e(detail)} '
        "Features, and therefore every number below, differ from those of ImageNet weights.</div>"
    )


def counts_section(manifest: dict[str, Any], metrics: dict[str, Any] | None) -> str:
    counts = manifest.get("counts", {})
    rows = [[name, counts[name]] for name in ("listed", "featurized", "quarantined") if name in counts]
    if metrics and metrics.get("classifier"):
        rows.append(["Training rows (classifier)", metrics["classifier"]["training_rows"]])
    if metrics and metrics.get("test"):
        rows.append(["Test rows (evaluated)", metrics["test"]["rows"]])
    return "<h2>Images</h2>" + _table(["", "count"], rows)


def pca_section(manifest: dict[str, Any]) -> str:
    pca = manifest.get("pca", {})
    rows = [["k (components kept)", pca.get("k")], ["explained variance", _pct(pca.get("explained_variance_total"))]]
    if pca.get("variance_target") is not None:
        rows.append(["variance target", _pct(pca["variance_target"])])
    return "<h2>PCA</h2>" + _table(["", ""], rows)


def classifier_section(summary: dict[str, Any]) -> str:
    rows = [
        [
            s["name"], f"{s['validation_accuracy']:.4f}", f"{s['validation_log_loss']:.4f}", s["validation_rows"],
            "chosen" if s["name"] == summary["chosen"] else "",
        ]
        for s in summary["candidates"]
    ]
    return (
        f"<h2>Classifier</h2><p>Chosen on a validation split of the Training rows "
        f"({summary['validation_fraction']:.0%} per class, seed {summary['seed']}), then refitted on all "
        f"{summary['training_rows']} Training rows: <b>{_e(summary['chosen'])}</b>.</p>"
        + f"<p>Rule: {_e(summary['selection'])}.</p>"
        + _table(["candidate", "validation accuracy", "validation log-loss", "validation rows", ""], rows)
    )


def metrics_section(test: dict[str, Any]) -> str:
    headline = _table(
        ["metric (Test)", "value"],
        [
            ["top-1 accuracy", f"{test['top1_accuracy']:.4f} ({_pct(test['top1_accuracy'])})"],
            ["top-3 accuracy", f"{test['top3_accuracy']:.4f} ({_pct(test['top3_accuracy'])})"],
            ["macro-F1", f"{test['macro_f1']:.4f}"],
        ],
    )
    per_class = _table(
        ["class", "precision", "recall", "F1", "support"],
        [
            [m["label"], f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", m["support"]]
            for m in test["per_class"]
        ],
    )
    return "<h2>Test metrics</h2>" + headline + "<h3>Per class</h3>" + per_class


def _fallback_plot(name: str, manifest: dict[str, Any], metrics: dict[str, Any] | None, out: Path) -> Path | None:
    """Draw a missing plot from the run's JSON files, if they hold what it needs."""
    from fruitfeat.recognition import plots  # loads matplotlib and Spark

    pca = manifest.get("pca", {})
    spectrum = pca.get("spectrum") or pca.get("explained_variance")
    if name == "explained_variance" and spectrum:
        return plots.plot_explained_variance(spectrum, pca["k"], out, pca.get("variance_target"))
    test = (metrics or {}).get("test")
    if name == "confusion_matrix" and test and test["rows"]:
        return plots.plot_confusion_matrix(test["confusion_matrix"], test["labels"], out)
    return None


def plot_section(run_dir: Path, manifest: dict[str, Any], metrics: dict[str, Any] | None) -> str:
    parts = ["<h2>Plots</h2>"]
    with tempfile.TemporaryDirectory(prefix="fruitfeat-report-") as tmp:
        for name, title in PLOT_TITLES.items():
            png = run_dir / "plots" / f"{name}.png"
            if not png.exists():
                png = _fallback_plot(name, manifest, metrics, Path(tmp) / f"{name}.png")
            if png is None:
                parts.append(f"<h3>{_e(title)}</h3><p>Not produced by this run.</p>")
                continue
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            parts.append(f'<h3>{_e(title)}</h3><img alt="{_e(title)}" src="data:image/png;base64,{data}">')
    return "".join(parts)


def render_html(run_dir: Path, manifest: dict[str, Any], metrics: dict[str, Any] | None) -> str:
    run_id = manifest.get("run_id", run_dir.name)
    body = [f"<h1>fruitfeat run {_e(run_id)}</h1>", weights_section(manifest.get("weights", {}))]
    body += [counts_section(manifest, metrics), pca_section(manifest)]
    if metrics and metrics.get("classifier"):
        body.append(classifier_section(metrics["classifier"]))
    if metrics and metrics.get("test"):
        body.append(metrics_section(metrics["test"]))
    else:
        body.append("<h2>Test metrics</h2><p>No classifier evaluation in this run.</p>")
    body.append(plot_section(run_dir, manifest, metrics))
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>fruitfeat {_e(run_id)}</title>'
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )


def render_report(run_dir: str | Path) -> Path:
    """Write ``<run_dir>/report.html`` (a local run directory or ``file://`` URI) and return its path."""
    run_dir = Path(str(run_dir).removeprefix("file://"))
    manifest = read_json(run_dir / "manifest.json")
    if manifest is None:
        raise FileNotFoundError(f"{run_dir}/manifest.json does not exist: not a fruitfeat run directory")
    target = run_dir / REPORT_FILE
    target.write_text(render_html(run_dir, manifest, read_json(run_dir / "metrics.json")), encoding="utf-8")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fruitfeat report", description="Write runs/<run_id>/report.html.")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--output", help="output directory whose _LATEST names the run (default data/output)")
    where.add_argument("--run", help="a run directory instead of the published one")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        path = render_report(resolve_run_dir(args.output, args.run))
    except (PredictSetupError, FileNotFoundError) as exc:
        print(f"fruitfeat report: error: {exc}", file=sys.stderr)
        return 1
    print(f"fruitfeat: report written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
