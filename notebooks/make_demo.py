"""Write ``notebooks/demo.ipynb`` from the cells below: ``python notebooks/make_demo.py [--check]``.

Why a generator: the notebook's code is reviewed and diffed here as plain Python, and the file in
git always comes out with no outputs and no execution counts (fixed cell ids, sorted keys), so a
regeneration is byte-identical. ``--check`` exits 1 when the committed notebook differs from what
this script writes (``tests/test_notebook.py`` checks the same). Edit this file, not the notebook.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from textwrap import dedent

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOK = Path(__file__).resolve().with_name("demo.ipynb")
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

        Run it with the project's interpreter (the `.venv` made by `make venv`; `pip install ipykernel`
        there to get a kernel). Each run writes a new `runs/<run_id>/` and moves `_LATEST`, exactly as
        the job does. It takes about 2-3 minutes on 2 idle cores, mostly Spark ML training the classifier
        candidates.
        """,
    ),
    _code(
        "parameters",
        """
        # Parameters: `--set` style overrides of conf/local.yaml, e.g. ["featurize.image_size=96", "pca.k=0.95"].
        OVERRIDES: list[str] = []
        # Test photos per class shown in the prediction grid (the sample set has 6 per class).
        GRID_PER_CLASS = 6
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
        run this kernel's interpreter, and Spark binds to loopback because there is no network.
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
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        logging.getLogger("fruitfeat").setLevel(logging.INFO)  # stage progress, as spark-submit shows it
        print(f"repo: {REPO}\\npython: {sys.executable}\\noverrides: {OVERRIDES or 'none'}")
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

            print(f"generating the sample images in {INPUT_DIR}: {len(generate_sample_dataset(INPUT_DIR).files)} files")
        weights_path = local_path(config.model.weights) if config.model.weights not in ("imagenet", "random") else None
        if weights_path is not None and not weights_path.exists():
            raise FileNotFoundError(f"{weights_path} is missing: run `make weights` in {REPO} first")

        print(f"input  : {config.input.path}\\noutput : {config.output.path}\\nweights: {config.model.weights}")
        print(f"image_size={config.featurize.image_size}, pca.k={config.pca.k}, master={config.spark.master}")

        # Spark's console progress bars (a line per task wave) would flood this cell; the stage log lines suffice.
        quiet = config.spark.model_copy(update={"conf": {**config.spark.conf, "spark.ui.showConsoleProgress": "false"}})
        spark = build_spark_session(config.model_copy(update={"spark": quiet}))
        result = run_pipeline(config, spark)
        RUN_DIR = local_path(result.run_path)
        manifest = result.manifest
        print(f"published run {result.run_id} in {RUN_DIR}")
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
        network input and the top-1 class with its probability (green when right). With every Test
        photo in the grid, the share it gets right equals the top-1 accuracy Spark measured (step 5).
        """,
    ),
    _code(
        "predict",
        """
        from IPython.display import Image
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

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

        columns = min(6, len(results))
        rows = -(-len(results) // columns)
        figure = Figure(figsize=(1.9 * columns, 2.1 * rows))
        FigureCanvasAgg(figure)
        correct = 0
        for i, photo in enumerate(results):
            ax = figure.add_subplot(rows, columns, i + 1)
            ax.set_axis_off()
            truth = Path(photo.photo).parent.name
            if photo.error:
                ax.set_title(f"{truth}\\n{photo.error}", fontsize=7, color="red")
                continue
            label, probability = photo.top[0]
            correct += label == truth
            ax.imshow(read_photo(photo.photo, predictor.image_size))
            title = f"{label} {probability:.1%}" + ("" if label == truth else f"\\n(is {truth})")
            ax.set_title(title, fontsize=8, color="green" if label == truth else "red")
        figure.suptitle(f"Predicted fruit on Test photos, run {result.run_id}")
        figure.tight_layout()
        png = io.BytesIO()
        figure.savefig(png, format="png", dpi=90, bbox_inches="tight")
        display(Image(data=png.getvalue()))
        print(f"grid: {correct}/{len(results)} predicted correctly")
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
        print(f"{features.count()} rows in {result.features_path}")
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
    notebook = new_notebook(
        cells=CELLS,
        metadata={
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
    )
    nbformat.validate(notebook)
    return notebook


def notebook_text() -> str:
    return nbformat.writes(build_notebook()) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if demo.ipynb differs from this script's output")
    args = parser.parse_args(argv)
    text = notebook_text()
    if args.check:
        current = NOTEBOOK.read_text(encoding="utf-8") if NOTEBOOK.exists() else ""
        if current != text:
            print(f"{NOTEBOOK} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    NOTEBOOK.write_text(text, encoding="utf-8")
    print(f"wrote {NOTEBOOK}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
