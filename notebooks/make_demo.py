"""Write ``notebooks/demo.ipynb`` from the cells below and execute it: ``make demo``.

``python notebooks/make_demo.py`` builds the notebook from ``CELLS``, runs it headless on the sample
data (``conf/local.yaml``: ``data/sample`` in, a new run in ``data/output``) in a kernel of this
interpreter, and saves it with its outputs, so the notebook shows its results where people read it
(GitHub). The kernelspec, Jupyter's runtime files and IPython's profile live in a temporary directory:
nothing is written to ``~/.local`` or ``~/.ipython``. The notebook is replaced only when every cell ran.

Why a generator: the notebook's code is reviewed and diffed here as plain Python (fixed cell ids,
sorted keys). ``--check`` exits 1 when the committed notebook's cells (ids, types, tags and sources;
not outputs) differ from ``CELLS`` (``tests/test_notebook.py`` checks the same); ``--no-execute``
writes the notebook without outputs (quick to look at the cells; do not commit that). Edit this file,
not the notebook.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOK = Path(__file__).resolve().with_name("demo.ipynb")
REPO = NOTEBOOK.parents[1]
KERNEL_NAME = "fruitfeat-demo"  # a kernelspec written into a temporary JUPYTER_PATH by execute()
CELL_TIMEOUT_S = 900  # per cell; the pipeline cell takes ~2-3 min on 2 idle cores
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
PARAMETERS_TAG = "parameters"  # papermill's convention; tests/test_notebook.py replaces this cell
GRID_TAG = "prediction-grid"


def _md(cell_id: str, text: str):
    return new_markdown_cell(dedent(text).strip("\n"), id=cell_id)


def _code(cell_id: str, text: str, *tags: str):
    cell = new_code_cell(dedent(text).strip("\n"), id=cell_id)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


CELLS = [
    _md(
        "intro",
        """
        # fruitfeat, end to end on the sample photos

        This notebook runs the job in-process on the 6-class sample set with `conf/local.yaml`, then
        walks through what a run publishes: the manifest, predictions of the exported predictor, the
        plots, the Test metrics and the features Parquet. It is the same code path as `make run-local`
        (which uses `spark-submit`), so what you see here is what production writes.

        The outputs saved with it come from `make demo`, which regenerates the notebook from
        `notebooks/make_demo.py` and executes it in the project's `.venv` (paths are shown relative to
        the repo). To run it yourself, open it with a kernel of that interpreter (`make venv` installs
        `ipykernel`). Each run writes a new `runs/<run_id>/` and moves `_LATEST`, exactly as the job does.
        It takes about 2-3 minutes on 2 idle cores, mostly Spark ML training the classifier candidates.
        """,
    ),
    _code(
        "parameters",
        """
        # Parameters: `--set` style overrides of conf/local.yaml, e.g. ["featurize.image_size=96", "pca.k=0.95"].
        OVERRIDES: list[str] = []
        # Test photos per class shown in the prediction grid (the sample set has 6 thumbnails and 1 phone photo per class).
        GRID_PER_CLASS = 7
        """,
        PARAMETERS_TAG,
    ),
    _md(
        "setup-md",
        """
        ## Setup

        `conf/local.yaml` holds relative paths that the job resolves against the directory it runs
        from (the repo root under `make`), while a notebook's working directory depends on how it was
        opened. So the repo root is looked up (the `FRUITFEAT_REPO` variable, the notebook's own file,
        the working directory and its parents, then the installed package) and the config is read from
        there. The environment variables are the ones the Makefile exports: Spark's Python workers must
        run this kernel's interpreter, and Spark binds to loopback because there is no network. Paths
        are printed relative to the repo (`rel`), and so are the job's progress lines.
        """,
    ),
    _code(
        "setup",
        """
        import contextlib
        import io
        import json
        import logging
        import os
        import sys
        from pathlib import Path

        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("FRUITFEAT_SPARK_LOG_LEVEL", "ERROR")  # Spark's warnings: see the run cell


        def find_repo_root() -> Path:
            \"\"\"The fruitfeat checkout: the first candidate (or parent) holding conf/local.yaml and the package.\"\"\"
            hints = [
                os.environ.get("FRUITFEAT_REPO"),
                globals().get("__vsc_ipynb_file__"),  # VS Code: this notebook's path
                os.environ.get("JPY_SESSION_NAME"),  # Jupyter Server 2: this notebook's path
                os.getcwd(),
            ]
            try:
                import fruitfeat

                hints.append(fruitfeat.__file__)  # editable install (make venv): <repo>/fruitfeat/__init__.py
            except ImportError:
                pass
            for hint in filter(None, hints):
                start = Path(hint).expanduser().resolve()
                for candidate in (start, *start.parents):
                    if all((candidate / marker).is_file() for marker in ("conf/local.yaml", "fruitfeat/pipeline.py")):
                        return candidate
            raise RuntimeError(
                "cannot find the fruitfeat repository (conf/local.yaml): open the notebook from the repo, "
                "or set FRUITFEAT_REPO=/path/to/repo"
            )


        REPO = find_repo_root()


        def rel(path) -> str:
            \"\"\"A path or file:// URI under the repo, relative to it: the outputs are not tied to one machine.\"\"\"
            text = str(path).removeprefix("file://")
            try:
                return Path(text).relative_to(REPO).as_posix()
            except ValueError:
                return str(path)


        class RepoRelative(logging.Formatter):
            \"\"\"The job's progress lines, with the paths under the repo made relative to it.\"\"\"

            def format(self, record: logging.LogRecord) -> str:
                return super().format(record).replace(f"file://{REPO}/", "").replace(f"{REPO}/", "")


        progress = logging.StreamHandler()
        progress.setFormatter(RepoRelative("%(levelname)s %(name)s: %(message)s"))
        log = logging.getLogger("fruitfeat")
        log.handlers[:] = [progress]  # stage progress, as spark-submit shows it (once, if the cell is re-run)
        log.setLevel(logging.INFO)
        log.propagate = False
        print(f"python: {rel(sys.executable)}\\nworking directory: {rel(Path.cwd())}")
        print(f"overrides: {OVERRIDES or 'none'}")
        """,
    ),
    _md(
        "run-md",
        """
        ## 1. Run the pipeline

        The config is validated as a whole before Spark starts, so a typo in an override fails here in
        milliseconds rather than minutes into the run. The SparkSession is built by the package (Arrow
        on, bounded Arrow batches) and kept, so the last steps can read the run's Parquet back with it.
        The sample images are generated if they are missing (what `make sample-data` does); the
        weights are not, because `make weights` decides between ImageNet and the offline fallback.
        """,
    ),
    _code(
        "run",
        """
        from fruitfeat.config import load_config
        from fruitfeat.io.uris import local_path
        from fruitfeat.pipeline import run_pipeline
        from fruitfeat.session import build_spark_session

        with contextlib.chdir(REPO):  # relative paths in conf/local.yaml are relative to the repo root
            config = load_config(REPO / "conf" / "local.yaml", OVERRIDES)

        INPUT_DIR, OUTPUT_DIR = local_path(config.input.path), local_path(config.output.path)
        if INPUT_DIR is None or OUTPUT_DIR is None:
            raise ValueError("this notebook shows local runs: input.path and output.path must be local directories")
        if INPUT_DIR == REPO / "data" / "sample" and not INPUT_DIR.exists():
            from fruitfeat.sample_data import generate_sample_dataset

            count = len(generate_sample_dataset(INPUT_DIR, phone_per_class=1).files)  # as `make sample-data`
            print(f"generated the sample images in {rel(INPUT_DIR)}: {count} files")
        weights_path = local_path(config.model.weights) if config.model.weights not in ("imagenet", "random") else None
        if weights_path is not None and not weights_path.exists():
            raise FileNotFoundError(f"{weights_path} is missing: run `make weights` in {REPO} first")

        print(f"input  : {rel(config.input.path)}\\noutput : {rel(config.output.path)}")
        print(f"weights: {rel(config.model.weights)}")
        print(f"image_size={config.featurize.image_size}, pca.k={config.pca.k}, master={config.spark.master}")

        # The kernel shows the JVM's output in this cell too. Spark's console progress bars (a line per task
        # wave) would flood it, and its benign start-up warnings would bury the stage lines: the JVM gets the
        # log4j settings of `make run-local` (conf/log4j2.properties), then only Spark's errors are shown.
        log4j = f"-Dlog4j.configurationFile={(REPO / 'conf' / 'log4j2.properties').as_uri()}"
        spark_conf = {"spark.driver.extraJavaOptions": log4j, **config.spark.conf, "spark.ui.showConsoleProgress": "false"}
        quiet = config.spark.model_copy(update={"conf": spark_conf})
        spark = build_spark_session(config.model_copy(update={"spark": quiet}))
        result = run_pipeline(config, spark)
        RUN_DIR = local_path(result.run_path)
        manifest = result.manifest
        print(f"published run {result.run_id} in {rel(RUN_DIR)}")
        """,
    ),
    _md(
        "manifest-md",
        """
        ## 2. The manifest headline

        `manifest.json` is the run's contract with whoever reads it: it proves that every listed file
        was either featurized or quarantined, records the PCA kept and which weights produced the
        features. Features from weights other than ImageNet are not ImageNet features, so that is
        flagged as loudly as in `report.html`.
        """,
    ),
    _code(
        "manifest",
        """
        import pandas as pd
        from IPython.display import HTML, display

        from fruitfeat.recognition.report import weights_section

        counts, pca, weights = manifest["counts"], manifest["pca"], manifest["weights"]
        recognition = manifest.get("recognition") or {}
        headline = pd.DataFrame.from_dict(
            {
                "run": manifest["run_id"],
                "images listed": counts["listed"],
                "featurized": counts["featurized"],
                "quarantined": counts["quarantined"],
                "PCA k": pca["k"],
                "explained variance": f"{pca['explained_variance_total']:.1%}",
                "weights source": weights.get("source", "?"),
                "classifier": (recognition.get("classifier") or {}).get("chosen", "not trained"),
                "run time (s)": round(sum(manifest["stage_seconds"].values()), 1),
            },
            orient="index",
            columns=["value"],
        )
        display(headline)
        display(HTML(weights_section(weights)))  # the same box as report.html
        if weights.get("source") != "imagenet":
            print(
                f"WARNING: the weights are NOT ImageNet (source: {weights.get('source')}). "
                f"{weights.get('description', '')}",
                file=sys.stderr,
            )
        """,
    ),
    _md(
        "predict-md",
        """
        ## 3. Predictions on Test photos, without Spark

        `predictor.npz` holds the run's PCA and classifier as numpy arrays, so `fruitfeat predict`
        recognises a photo without starting a JVM. The photos below go through exactly that path
        (`fruitfeat.recognition.predict.predict_photos`: the executors' decoding, MobileNetV2 rebuilt from the
        run's weights file, checked against its sha256, then the predictor). Each tile shows the
        network input and the top-1 class with its probability (green when right); one line per class
        sums them up below the grid. With every Test photo in the grid, the share it gets right equals
        the top-1 accuracy Spark measured (step 5).
        """,
    ),
    _code(
        "predict",
        """
        from collections import Counter

        from IPython.display import Image
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from PIL import Image as PILImage

        from fruitfeat.featurize.decode import DecodeOptions
        from fruitfeat.recognition.predict import predict_photos, read_photo
        from fruitfeat.recognition.predictor import PREDICTOR_FILE, load_predictor

        predictor = load_predictor(RUN_DIR / PREDICTOR_FILE)
        print(
            f"predictor: {predictor.meta['classifier']['name']}, k={predictor.k}, "
            f"{predictor.image_size} px, classes {', '.join(predictor.labels)}"
        )

        extensions = {"." + e for e in config.input.extensions}
        photos = []
        for class_dir in sorted(p for p in (INPUT_DIR / "Test").iterdir() if p.is_dir()):
            files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in extensions)
            photos += [str(p) for p in files[:GRID_PER_CLASS]]
        results = predict_photos(photos, RUN_DIR)  # what `fruitfeat predict --run RUN_DIR PHOTO...` runs
        decoding = DecodeOptions.from_recorded(predictor.meta.get("decode"))  # as the run decoded

        columns = min(GRID_PER_CLASS, len(results))  # one row per class
        rows = -(-len(results) // columns)
        figure = Figure(figsize=(1.9 * columns, 2.1 * rows))
        FigureCanvasAgg(figure)
        correct = 0
        for i, photo in enumerate(results):
            ax = figure.add_subplot(rows, columns, i + 1)
            ax.set_axis_off()
            truth = Path(photo.photo).parent.name
            if photo.error:
                ax.set_title(f"{truth}\\n{photo.error}", fontsize=8, color="red")
                continue
            label, probability = photo.top[0]
            correct += label == truth
            ax.imshow(read_photo(photo.photo, predictor.image_size, decoding))  # what the network saw
            title = f"{label} {probability:.1%}" + ("" if label == truth else f"\\n(is {truth})")
            ax.set_title(title, fontsize=9, color="green" if label == truth else "red")
        figure.suptitle(f"Predicted fruit on Test photos, run {result.run_id}")
        figure.tight_layout()
        drawn, png = io.BytesIO(), io.BytesIO()
        figure.savefig(drawn, format="png", dpi=90, bbox_inches="tight")
        with PILImage.open(drawn) as grid:  # 256 colours: a third of the bytes, for the notebook saved with it
            grid.convert("RGB").quantize(256).save(png, format="PNG", optimize=True)
        display(Image(data=png.getvalue()))
        print(f"grid: {correct}/{len(results)} predicted correctly")
        by_class: dict[str, list] = {}
        for photo in results:
            by_class.setdefault(Path(photo.photo).parent.name, []).append(photo)
        for truth, photos in by_class.items():
            ok = [p for p in photos if not p.error]
            predicted = Counter(p.top[0][0] for p in ok) + Counter({"unreadable": len(photos) - len(ok)})
            mean = sum(p.top[0][1] for p in ok) / len(ok) if ok else float("nan")
            print(
                f"{truth}: {predicted[truth]}/{len(photos)} right, predicted as "
                + ", ".join(f"{label} x{n}" for label, n in predicted.most_common())
                + f" (mean top-1 probability {mean:.1%})"
            )
        """,
        GRID_TAG,
    ),
    _md(
        "plots-md",
        """
        ## 4. The run's plots

        These are the PNGs the run published under `plots/` (the ones `report.html` embeds), not a
        redraw: what you see is what was shipped. The explained variance tells whether `pca.k` keeps
        enough of the signal, the scatter whether the classes separate already in two components, and
        the confusion matrix which fruit gets mistaken for which.
        """,
    ),
    _code(
        "plots",
        """
        from IPython.display import Markdown

        from fruitfeat.recognition.report import PLOT_TITLES
        from fruitfeat.recognition.stage import PLOTS

        for name in PLOTS:
            png = RUN_DIR / "plots" / f"{name}.png"
            display(Markdown(f"**{PLOT_TITLES[name]}** (`{png.relative_to(RUN_DIR)}`)"))
            display(Image(filename=str(png)) if png.exists() else Markdown("_not produced by this run_"))
        """,
    ),
    _md(
        "metrics-md",
        """
        ## 5. Test metrics

        The classifier is chosen on a validation split of the Training photos and refitted on all of
        them; the Test photos are used only here, so these numbers are an honest estimate (on generated
        drawings, so they say the chain works, not how well it does on the real Fruits-360).
        `metrics.json` also holds the confusion matrix and the validation scores of every candidate.
        """,
    ),
    _code(
        "metrics",
        """
        metrics = json.loads((RUN_DIR / "metrics.json").read_text(encoding="utf-8"))
        test = metrics["test"]
        if test is None:
            print("no Test photos: the classifier was trained but not evaluated")
        else:
            display(
                pd.DataFrame(
                    {"value": [
                        f"{test['top1_accuracy']:.3f} ({test['top1_accuracy']:.1%})",
                        f"{test['top3_accuracy']:.3f} ({test['top3_accuracy']:.1%})",
                        f"{test['macro_f1']:.3f}",
                        str(test["rows"]),
                    ]},
                    index=["top-1 accuracy", "top-3 accuracy", "macro-F1", "Test photos"],
                )
            )
            per_class = pd.DataFrame(test["per_class"]).set_index("label")[["precision", "recall", "f1", "support"]]
            display(per_class.round(3))
        """,
    ),
    _md(
        "parquet-md",
        """
        ## 6. The features Parquet

        `features/` is the product other teams read (Spark, pandas, Athena...), so its schema is the
        interface: `path`, `label`, `split` and `features`, an array of `k` floats. It is read back
        here with the same SparkSession; a downstream job would do exactly this.
        """,
    ),
    _code(
        "parquet",
        """
        from pyspark.sql import functions as F

        features = spark.read.parquet(result.features_path)
        features.printSchema()
        print(f"{features.count()} rows in {rel(result.features_path)}")
        features.groupBy("split").count().orderBy("split").show()
        (
            features.select(
                F.substring_index("path", "/", -3).alias("photo"),
                "label",
                "split",
                F.size("features").alias("k"),
                F.slice("features", 1, 3).alias("features[0:3]"),
            )
            .orderBy("path")
            .show(5, truncate=False)
        )
        """,
    ),
    _md(
        "stop-md",
        """
        ## 7. Stop Spark

        The session holds a JVM with a 4 GB driver heap and Python workers with TensorFlow loaded; on a
        shared 2-core machine they should not outlive the demo.
        """,
    ),
    _code(
        "stop",
        """
        spark.stop()
        print("SparkSession stopped")
        """,
    ),
]


def build_notebook() -> nbformat.NotebookNode:
    notebook = new_notebook(cells=CELLS, metadata={"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}})
    nbformat.validate(notebook)
    return notebook


def cell_sources(notebook) -> list[tuple[str, str, list[str], str]]:
    """What the generator decides, outputs aside: (id, type, tags, source) of each cell."""
    return [
        (cell.get("id"), cell["cell_type"], list(cell.get("metadata", {}).get("tags", [])), cell["source"])
        for cell in notebook["cells"]
    ]


def notebook_text(notebook: nbformat.NotebookNode) -> str:
    return nbformat.writes(notebook) + "\n"


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def execute(
    notebook: nbformat.NotebookNode, scratch: Path, *, python: str | None = None, timeout: int = CELL_TIMEOUT_S
) -> nbformat.NotebookNode:
    """Run every cell of ``notebook`` in place, from notebooks/ as Jupyter would, in a kernel of ``python``.

    ``python`` defaults to this interpreter (the venv's under ``make demo``). Its kernelspec, Jupyter's
    runtime files and IPython's profile go to ``scratch``. Raises nbclient's ``CellExecutionError``
    (with the cell's traceback) on the first failing cell. No per-cell timing metadata is recorded,
    and the kernelspec saved in the notebook stays the generic ``python3``.
    """
    import nbclient

    jupyter = scratch / "jupyter"
    kernel_dir = jupyter / "kernels" / KERNEL_NAME
    kernel_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [python or sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fruitfeat demo (venv)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (kernel_dir / "kernel.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
    with _environment(
        JUPYTER_PATH=str(jupyter), JUPYTER_RUNTIME_DIR=str(scratch / "runtime"), IPYTHONDIR=str(scratch / "ipython")
    ):
        client = nbclient.NotebookClient(
            notebook,
            kernel_name=KERNEL_NAME,
            timeout=timeout,
            record_timing=False,
            resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        )
        client.execute()
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if demo.ipynb's cells differ from CELLS")
    parser.add_argument("--no-execute", action="store_true", help="write the notebook without outputs")
    parser.add_argument("--python", help="the kernel's interpreter (default: this one)")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds per cell")
    args = parser.parse_args(argv)
    notebook = build_notebook()
    shown = NOTEBOOK.relative_to(REPO)
    if args.check:
        current = nbformat.read(NOTEBOOK, as_version=4) if NOTEBOOK.exists() else {"cells": []}
        if cell_sources(current) != cell_sources(notebook):
            print(f"{shown} is out of date: run `make demo`", file=sys.stderr)
            return 1
        return 0
    if not args.no_execute:
        print(f"executing {shown} on the sample data (a few minutes)...", flush=True)
        # A failing cell or a timeout (CellControlSignal), or a kernel that died.
        from nbclient.exceptions import CellControlSignal, DeadKernelError

        with tempfile.TemporaryDirectory(prefix="fruitfeat-demo-") as scratch:
            try:
                execute(notebook, Path(scratch), python=args.python, timeout=args.timeout)
            except (CellControlSignal, DeadKernelError) as error:
                print(f"{error}\n{shown} left unchanged: a cell failed", file=sys.stderr)
                return 1
    text = notebook_text(notebook)
    NOTEBOOK.write_text(text, encoding="utf-8")
    print(f"wrote {shown} ({len(text.encode()) / 1024:.0f} KiB{', no outputs' if args.no_execute else ''})")
    if str(REPO) in text:
        print(f"warning: {shown} shows absolute paths of this machine ({REPO}): print them with rel()", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
