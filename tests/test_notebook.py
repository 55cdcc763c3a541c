"""``notebooks/demo.ipynb``: committed with its outputs, its cells are the generator's, and it runs headless.

``make demo`` (``notebooks/make_demo.py``) writes the notebook and executes it, so the committed file
shows its results where people read it. The fast tests check that the committed cells are what the
generator writes (ids, types, tags and sources; outputs and execution counts aside) and that the saved
outputs are there: the plots and the prediction grid as PNGs, no error, no absolute path of the machine
that ran it, a modest size.

The slow test executes the notebook through the generator's own ``execute`` (the code ``make demo``
runs: a kernel of this very interpreter, its kernelspec in a temporary ``JUPYTER_PATH``) with the
parameters cell replaced (96 px, sample images and output in tmp_path, so ``data/`` is never touched)
and the real offline weights, because random-weight features do not recognise the sample fruit and the
notebook shows predictions. conf/local.yaml names the 224 px ``.onnx``; at 96 px the notebook is pointed
at the ``.weights.h5`` it was built from, which the driver converts for that size.
"""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "demo.ipynb"
GENERATOR = REPO / "notebooks" / "make_demo.py"
REAL_WEIGHTS = REPO / "data" / "weights" / "mobilenetv2_notop.weights.h5"
IMAGE_SIZE = 96  # the recognition tests' size: right answers on the sample, a quarter of 224 px's compute
CELL_TIMEOUT_S = 600  # per cell; the pipeline cell takes ~1-2 min on 2 shared cores
MAX_NOTEBOOK_BYTES = 1 << 20  # read on GitHub: PNGs at modest dpi
PLOT_COUNT = 3  # explained variance, PCA scatter, confusion matrix
CLASS_LINE = re.compile(r"^(?P<truth>[^:\n]+): (?P<right>\d+)/(?P<shown>\d+) right, predicted as (?P<predicted>.+) \(mean")


def _generator() -> dict:
    pytest.importorskip("nbformat", reason="nbformat is a test dependency (notebooks/make_demo.py needs it)")
    return runpy.run_path(str(GENERATOR), run_name="make_demo")  # no __pycache__ left in notebooks/


def _committed():
    """The committed notebook as nbformat reads it (multi-line sources and texts joined into strings)."""
    nbformat = pytest.importorskip("nbformat", reason="nbformat is a test dependency")
    return nbformat.read(NOTEBOOK, as_version=4)


def _cells(notebook: dict, tag: str) -> list[dict]:
    return [c for c in notebook["cells"] if tag in c.get("metadata", {}).get("tags", [])]


def _cell(notebook, cell_id: str):
    return next(c for c in notebook["cells"] if c.get("id") == cell_id)


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


def _pngs(cell: dict) -> int:
    return sum("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


def _class_lines(cell: dict) -> list[re.Match]:
    return [m for m in map(CLASS_LINE.match, _text(cell).splitlines()) if m]


def _predicted_labels(line: re.Match) -> set[str]:
    return {part.rsplit(" x", 1)[0] for part in line["predicted"].split(", ")}


# ----------------------------------------------------------------- the committed notebook


def test_notebook_cells_are_what_its_generator_writes():
    generator = _generator()
    committed = _committed()
    assert generator["cell_sources"](committed) == generator["cell_sources"](generator["build_notebook"]()), (
        "notebooks/demo.ipynb's cells differ from notebooks/make_demo.py: edit the generator, then run `make demo`"
    )


def test_committed_notebook_shows_its_results():
    text = NOTEBOOK.read_text(encoding="utf-8")
    notebook = _committed()
    assert len(text.encode()) < MAX_NOTEBOOK_BYTES, "demo.ipynb is over 1 MiB: lower the PNGs' dpi"
    assert len(_cells(notebook, "parameters")) == 1, "exactly one cell must be tagged 'parameters'"
    assert len(_cells(notebook, "prediction-grid")) == 1, "exactly one cell must be tagged 'prediction-grid'"

    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    hint = "run `make demo` and commit notebooks/demo.ipynb with its outputs"
    assert all(c["execution_count"] is not None for c in code), f"some cells were not executed: {hint}"
    assert not [c["id"] for c in code if any(o["output_type"] == "error" for o in c["outputs"])], "a cell failed"
    assert _pngs(_cell(notebook, "plots")) == PLOT_COUNT, f"the plots are missing: {hint}"
    (grid,) = _cells(notebook, "prediction-grid")
    assert _pngs(grid) == 1, f"the prediction grid is missing: {hint}"
    lines = _class_lines(grid)
    assert lines, _text(grid)
    classes = {m["truth"] for m in lines}
    assert all(_predicted_labels(m) <= classes | {"unreadable"} for m in lines), _text(grid)
    assert re.search(r"published run \S+ in data/output/runs/\S+", _text(_cell(notebook, "run"))), "not a sample run"

    # Read on GitHub: nothing of the machine that ran it, no per-cell timestamps.
    outputs = json.dumps([c["outputs"] for c in code])
    assert str(REPO) not in outputs and "file:/" not in outputs, "absolute paths in the outputs: print them with rel()"
    assert not [c["id"] for c in code if "execution" in c["metadata"]], "per-cell timing metadata (record_timing)"
    assert notebook["metadata"]["kernelspec"]["name"] == "python3", "the notebook names the generic python3 kernel"


# ----------------------------------------------------------------- executed headless


@pytest.mark.slow
def test_notebook_runs_the_sample_pipeline_and_shows_the_run(tmp_path, monkeypatch):
    pytest.importorskip("nbclient", reason="nbclient is a test dependency")
    pytest.importorskip("ipykernel", reason="ipykernel is a test dependency")
    if not REAL_WEIGHTS.exists():
        pytest.skip(
            f"{REAL_WEIGHTS} is missing (make weights): the notebook's prediction grid needs the real weights, "
            "random weights do not recognise the sample fruit"
        )
    import pandas as pd

    from fruitfeat.sample_data import generate_sample_dataset

    generator = _generator()
    sample = generate_sample_dataset(tmp_path / "sample", phone_per_class=1)  # the set `make sample-data` writes
    classes = {f.parent.name for f in sample.files}
    output = tmp_path / "output"
    monkeypatch.delenv("FRUITFEAT_REPO", raising=False)  # the notebook must find the repo by itself

    published = REPO / "data" / "output" / "_LATEST"
    published_before = published.read_bytes() if published.exists() else None
    committed_before = NOTEBOOK.read_bytes()
    notebooks_before = sorted(p.name for p in NOTEBOOK.parent.iterdir())

    notebook = generator["build_notebook"]()
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
    parameters.source = f"OVERRIDES = {overrides!r}\nGRID_PER_CLASS = 7\n"

    # What `make demo` runs; CellExecutionError (with the cell's traceback) on the first failing cell.
    generator["execute"](notebook, tmp_path / "scratch", timeout=CELL_TIMEOUT_S)

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

    # The kernel ran this interpreter, shown relative to the repo when it is inside it (the venv).
    python = Path(sys.executable).absolute()
    shown_python = python.relative_to(REPO).as_posix() if python.is_relative_to(REPO) else str(python)
    assert f"python: {shown_python}\n" in _text(_cell(notebook, "setup"))
    assert f"published run {manifest['run_id']} in " in _text(_cell(notebook, "run"))

    # Headline: the published run, loud when the weights are not ImageNet.
    headline = _text(_cell(notebook, "manifest"))
    assert manifest["run_id"] in headline and str(manifest["pca"]["k"]) in headline
    assert str(manifest["counts"]["featurized"]) in headline
    if manifest["weights"]["source"] != "imagenet":
        assert "NOT IMAGENET" in headline.upper() and manifest["weights"]["source"] in headline

    # The prediction grid: a PNG, every Test photo, as many right as Spark's evaluation says, and one
    # line per sample class naming predicted fruit of the sample classes.
    (grid,) = _cells(notebook, "prediction-grid")
    assert _pngs(grid) == 1, "the prediction grid image is missing"
    found = re.search(r"grid: (\d+)/(\d+) predicted correctly", _text(grid))
    assert found, _text(grid)
    correct, shown = map(int, found.groups())
    assert shown == metrics["rows"] == sum(1 for f in sample.files if f.parent.parent.name == "Test")
    assert correct == round(metrics["top1_accuracy"] * metrics["rows"]), "numpy predictions differ from Spark's"
    lines = _class_lines(grid)
    assert {m["truth"] for m in lines} == classes, _text(grid)
    assert all(_predicted_labels(m) <= classes for m in lines), _text(grid)
    assert sum(int(m["right"]) for m in lines) == correct and sum(int(m["shown"]) for m in lines) == shown

    assert _pngs(_cell(notebook, "plots")) == PLOT_COUNT, "the three plots of the run"
    assert "top-1" in _text(_cell(notebook, "metrics"))
    parquet = _text(_cell(notebook, "parquet"))
    assert "features: array" in parquet and f"{len(sample.files)} rows" in parquet
    assert "SparkSession stopped" in _text(_cell(notebook, "stop"))

    # Nothing outside tmp_path was written: not the published run, not the committed notebook.
    assert (published.read_bytes() if published.exists() else None) == published_before
    assert NOTEBOOK.read_bytes() == committed_before
    assert sorted(p.name for p in NOTEBOOK.parent.iterdir()) == notebooks_before
