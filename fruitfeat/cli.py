"""Command line: ``fruitfeat run|predict|report|runs|store|weights|sample-data``.

``jobs/run_pipeline.py`` is ``fruitfeat run``. Commands import their modules lazily so that
``fruitfeat predict`` never pays for Spark.
"""

from __future__ import annotations

import argparse
import logging
import sys

from fruitfeat.config import load_config
from fruitfeat.errors import FruitfeatError, report_error


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("fruitfeat").setLevel(logging.INFO)


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fruitfeat run", description="Featurize fruit photos with MobileNetV2, reduce with PCA, write Parquet."
    )
    parser.add_argument("--config", required=True, help="YAML file, e.g. conf/local.yaml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set pca.k=20 (repeatable)",
    )
    return parser


def run_main(argv: list[str] | None = None) -> int:
    args = run_parser().parse_args(argv)
    _configure_logging()
    try:
        config = load_config(args.config, args.overrides)
        from fruitfeat.pipeline import (
            run_pipeline,  # after validation: Spark imports slowly
        )

        result = run_pipeline(config)
    except FruitfeatError as exc:
        return report_error(exc)
    counts = result.manifest["counts"]
    pca = result.manifest["pca"]
    recognition = result.manifest.get("recognition")
    store = result.manifest["store"]
    rebuilt = store["rebuilt"]
    print(
        f"fruitfeat: published run {result.run_id}\n"
        f"  features : {result.features_path}  ({counts['featurized']} rows, k={pca['k']}, "
        f"{pca['explained_variance_total']:.1%} of variance)\n"
        f"  quarantined: {counts['quarantined']} of {counts['listed']} listed\n"
        f"  store    : version {store['version']}: {store['featurized']} files featurized, {store['reused']} reused, "
        f"{store['changed']} changed, {store['removed']} removed{f' (rebuilt: {rebuilt})' if rebuilt else ''}\n"
        f"  manifest : {result.run_path}/manifest.json\n"
        f"  weights  : {result.manifest['weights'].get('source')}"
    )
    if recognition and recognition["test"]:
        test = recognition["test"]
        print(
            f"  classifier: {recognition['classifier']['chosen']} — Test top-1 {test['top1_accuracy']:.1%}, "
            f"top-3 {test['top3_accuracy']:.1%}, macro-F1 {test['macro_f1']:.3f} on {test['rows']} photos"
        )
    if "report" in result.manifest["outputs"]:
        print(f"  report   : {result.manifest['outputs']['report']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "run": run_main,
        "predict": _predict_main,
        "report": _report_main,
        "runs": _runs_main,
        "store": _store_main,
        "weights": _weights_main,
        "sample-data": _sample_data_main,
    }
    if not argv or argv[0] not in commands:
        print(f"usage: fruitfeat {{{','.join(commands)}}} ...  (fruitfeat COMMAND --help)", file=sys.stderr)
        return 2
    try:
        return commands[argv[0]](argv[1:])
    except FruitfeatError as exc:
        return report_error(exc)


def _predict_main(argv: list[str]) -> int:
    from fruitfeat.recognition.predict import main as predict_main

    return predict_main(argv)


def _report_main(argv: list[str]) -> int:
    from fruitfeat.recognition.report import main as report_main

    return report_main(argv)


def _runs_main(argv: list[str]) -> int:
    from fruitfeat.io.runs import main as runs_main

    return runs_main(argv)


def _store_main(argv: list[str]) -> int:
    from fruitfeat.store.maintenance import main as store_main

    return store_main(argv)


def _weights_main(argv: list[str]) -> int:
    from fruitfeat.featurize.weights import main as weights_main
    from fruitfeat.sample_data import generate_sample_dataset  # the default int8 calibration images

    return weights_main(argv, generate_sample=generate_sample_dataset)


def _sample_data_main(argv: list[str]) -> int:
    from fruitfeat.sample_data import main as sample_main

    return sample_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
