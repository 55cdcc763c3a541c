"""``notebooks/demo.ipynb``: committed without outputs, and it runs headless from start to end.

The slow test executes the notebook with nbclient in a kernel of this very interpreter: the
kernelspec is written by the test into a temporary ``JUPYTER_PATH`` (a fresh clone after ``make
venv`` has none), the parameters cell is replaced (96 px, sample images and output in tmp_path, so
``data/`` is never touched) and the real offline weights are used, because random-weight features
do not recognise the sample fruit and the notebook shows predictions. conf/local.yaml names the
224 px ``.onnx``; at 96 px the notebook is pointed at the ``.weights.h5`` it was built from, which the
driver converts for that size.
"""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "demo.ipynb"
GENERATOR = REPO / "notebooks" / "make_demo.py"
REAL_WEIGHTS = REPO / "data" / "weights" / "mobilenetv2_notop.weights.h5"
KERNEL_NAME = "fruitfeat-test-venv"
IMAGE_SIZE = 96  # the recognition tests' size: right answers on the sample, a quarter of 224 px's compute
CELL_TIMEOUT_S = 600  # per cell; the pipeline cell takes ~1-2 min on 2 shared cores


def _cells(notebook: dict, tag: str) -> list[dict]:
    return [c for c in notebook["cells"] if tag in c.get("metadata", {}).get("tags", [])]


def _text(cell: dict) -> str:
    """Everything a cell printed or displayed as text (stdout, stderr, text/plain, text/html, tracebacks)."""
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif output["output_type"] == "error":
            parts.append("\n".join(output["traceback"]))
        else:
            data = output.get("data", {})
            parts += [data.get("text/plain", ""), data.get("text/html", ""), data.get("text/markdown", "")]
    return "\n".join(parts)


def _cell(notebook, cell_id: str):
    return next(c for c in notebook.cells if c.get("id") == cell_id)


def test_committed_notebook_has_no_outputs():
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code, "the notebook has no code cells"
    for cell in code:
        assert cell["outputs"] == [], f"cell {cell.get('id')} has committed outputs: clear them"
        assert cell["execution_count"] is None, f"cell {cell.get('id')} has an execution count: clear it"
    assert len(_cells(notebook, "parameters")) == 1, "exactly one cell must be tagged 'parameters'"
    assert len(_cells(notebook, "prediction-grid")) == 1, "exactly one cell must be tagged 'prediction-grid'"


def test_notebook_is_what_its_generator_writes():
    pytest.importorskip("nbformat", reason="nbformat is a test dependency (notebooks/make_demo.py needs it)")
    generator = runpy.run_path(str(GENERATOR), run_name="make_demo")  # no __pycache__ left in notebooks/
    assert NOTEBOOK.read_text(encoding="utf-8") == generator["notebook_text"](), (
        "notebooks/demo.ipynb differs from notebooks/make_demo.py's output: edit the generator, then run "
        "`.venv/bin/python notebooks/make_demo.py`"
    )


@pytest.mark.slow
def test_notebook_runs_the_sample_pipeline_and_shows_the_run(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is a test dependency")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is a test dependency")
    kernelspec = pytest.importorskip("ipykernel.kernelspec", reason="ipykernel is a test dependency")
    if not REAL_WEIGHTS.exists():
        pytest.skip(
            f"{REAL_WEIGHTS} is missing (make weights): the notebook's prediction grid needs the real weights, "
            "random weights do not recognise the sample fruit"
        )
    import pandas as pd

    from fruitfeat.sample_data import generate_sample_dataset

    sample = generate_sample_dataset(tmp_path / "sample")  # the full set `make sample-data` writes
    output = tmp_path / "output"

    # A kernelspec of this interpreter, visible only to this test.
    jupyter = tmp_path / "jupyter"
    kernelspec.install(kernel_name=KERNEL_NAME, display_name="fruitfeat test (venv)", prefix=str(jupyter))
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(jupyter / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("FRUITFEAT_REPO", raising=False)  # the notebook must find the repo by itself

    published = REPO / "data" / "output" / "_LATEST"
    published_before = published.read_bytes() if published.exists() else None
    notebooks_before = sorted(p.name for p in NOTEBOOK.parent.iterdir())

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (parameters,) = _cells(notebook, "parameters")
    overrides = [
        f"featurize.image_size={IMAGE_SIZE}",
        f"input.path={sample.root}",
        f"output.path={output}",
        f"model.weights={REAL_WEIGHTS}",  # the .onnx of `make weights` takes 224 px only
        # One classifier candidate instead of four (the MLP dominates): choosing among candidates is
        # tested in test_classifier.py; here it would only triple the run time.
        "classifier.candidates=[{family: logistic_regression, reg_param: 0.01}]",
        "spark.conf={spark.driver.memory: 4g, spark.sql.shuffle.partitions: 2, spark.ui.enabled: false}",
    ]
    parameters.source = f"OVERRIDES = {overrides!r}\nGRID_PER_CLASS = 6\n"

    client = nbclient.NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},  # run from notebooks/, as Jupyter would
    )
    client.execute()  # CellExecutionError (with the cell's traceback) on the first failing cell

    # The run it created, published in tmp_path only.
    pointer = json.loads((output / "_LATEST").read_text(encoding="utf-8"))
    run_dir = Path(pointer["path"].removeprefix("file://"))
    assert run_dir.parent == output / "runs"
    features = pd.read_parquet(run_dir / "features")
    rows = sorted((r.split, r.label, Path(r.path).name) for r in features.itertuples())
    expected = sorted((f.parent.parent.name, f.parent.name, f.name) for f in sample.files)
    assert rows == expected, "the features Parquet must hold exactly one row per sample image"
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["config"]["featurize"]["image_size"] == IMAGE_SIZE, "the parameters cell's overrides were not used"
    assert manifest["weights"]["uri"] == f"file://{REAL_WEIGHTS}" and manifest["weights"]["runtime"] == "onnxruntime"
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["test"]

    # Headline: loud when the weights are not ImageNet.
    headline = _text(_cell(notebook, "manifest"))
    assert manifest["run_id"] in headline and str(manifest["pca"]["k"]) in headline
    if manifest["weights"]["source"] != "imagenet":
        assert "NOT IMAGENET" in headline.upper() and manifest["weights"]["source"] in headline

    # The prediction grid: a PNG, every Test photo, as many right as Spark's evaluation says.
    (grid,) = _cells(notebook, "prediction-grid")
    assert any("image/png" in o.get("data", {}) for o in grid.outputs), "the prediction grid image is missing"
    found = re.search(r"grid: (\d+)/(\d+) predicted correctly", _text(grid))
    assert found, _text(grid)
    correct, shown = map(int, found.groups())
    assert shown == metrics["rows"] == sum(1 for f in sample.files if f.parent.parent.name == "Test")
    assert correct == round(metrics["top1_accuracy"] * metrics["rows"]), "numpy predictions differ from Spark's"

    plots = _cell(notebook, "plots")
    assert sum("image/png" in o.get("data", {}) for o in plots.outputs) == 3, "the three plots of the run"
    assert "top-1" in _text(_cell(notebook, "metrics"))
    parquet = _text(_cell(notebook, "parquet"))
    assert "features: array" in parquet and f"{len(sample.files)} rows" in parquet
    assert "SparkSession stopped" in _text(_cell(notebook, "stop"))

    # Nothing outside tmp_path was written.
    assert (published.read_bytes() if published.exists() else None) == published_before
    assert sorted(p.name for p in NOTEBOOK.parent.iterdir()) == notebooks_before
