"""Squash, crop or pad: which square input recognises non-square phone photos best, on the sample data.

    python bench/fit_choice.py [--phone-per-class N] [--seed S] [--weights PATH]

Runs the real job once per ``featurize.fit`` on the sample thumbnails plus N 12-megapixel phone photos
per class in Test and a few in Training (each run in its own process: fresh JVM, same data), scores the Test photos by kind
with the run's predictor, and measures per fit how far JPEG draft decoding moves the phone photos'
features. Prints a markdown table, writes bench/results/fit-<UTC timestamp>.json; the rest is temporary.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from fruitfeat.featurize.decode import FITS, DecodeOptions, decode_image

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_WEIGHTS = HERE.parent / "data" / "weights" / "mobilenetv2_notop.onnx"
IMAGE_SIZE = 224
CORES = 2
RESULT_PREFIX = "FIT_RESULT "


def _generate_class(root: str, name: str, phone: int, seed: int) -> int:
    """One class's files; the sample data keys its random streams by class, so classes split cleanly."""
    from fruitfeat.sample_data import generate_sample_dataset

    return len(generate_sample_dataset(root, classes=[name], phone_per_class=phone, seed=seed).files)


def generate(root: Path, phone: int, train_phones: int, seed: int) -> int:
    """The dataset in ``CORES`` processes, one class per task: phone photos take ~0.9 s each to draw.

    Training keeps only ``train_phones`` phone photos per class: the classifier learns mostly from square
    thumbnails (as from Fruits-360) and must generalise to the many non-square Test photos, where the
    fit decides what it sees (with as many phone photos in Training as in Test every fit scores 100 %,
    with none every fit fails: the textured table is never seen)."""
    from fruitfeat.sample_data import KNOWN_CLASSES

    with ProcessPoolExecutor(CORES) as pool:
        futures = [pool.submit(_generate_class, str(root), name, phone, seed) for name in KNOWN_CLASSES]
        total = sum(f.result() for f in futures)
    training_phones = [p for p in (root / "Training").rglob("r_phone_*.jpg") if int(p.stem.rsplit("_", 1)[1]) >= train_phones]
    for path in training_phones:
        path.unlink()
    return total - len(training_phones)


def test_photos(images: Path) -> tuple[list[Path], list[Path]]:
    """(thumbnails, phone photos) of the Test split, sorted."""
    files = sorted((images / "Test").rglob("*.jpg"))
    return [p for p in files if not p.name.startswith("phone_")], [p for p in files if p.name.startswith("phone_")]


def job_config(images: Path, output: Path, weights: Path, fit: str) -> dict[str, Any]:
    """The production job on the sample data, only ``featurize.fit`` varying between runs."""
    return {
        "input": {"path": str(images)},
        "output": {"path": str(output)},
        "model": {"weights": str(weights)},
        "featurize": {"image_size": IMAGE_SIZE, "fit": fit},
        "pca": {"k": 50},
        "classifier": {"enabled": True},
        "spark": {"master": f"local[{CORES}]", "app_name": "fruitfeat-fit-choice",
                  "conf": {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
                           "spark.sql.shuffle.partitions": str(CORES), "spark.driver.memory": "4g"}},
    }


def score(photos: list[Path], run_dir: Path) -> dict[str, float]:
    """Top-1 (top prediction is the class folder) and the mean probability given to the true class (0 when
    it is not in the top 3), which still ranks fits that tie on top-1. The predictor decodes as the run did."""
    from fruitfeat.recognition.predict import predict_photos

    results = predict_photos([str(p) for p in photos], run_dir)
    failed = [r.photo for r in results if r.error]
    if failed:
        raise RuntimeError(f"predict could not read {failed}")
    truth = [dict(r.top).get(Path(r.photo).parent.name, 0.0) for r in results]
    return {"n": len(results), "top1": sum(r.top[0][0] == Path(r.photo).parent.name for r in results) / len(results),
            "true_class_probability": float(np.mean(truth))}


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """One fit end to end (in a child process): the job, then the Test photos scored by kind."""
    from fruitfeat.config import config_from_dict
    from fruitfeat.io.uris import local_path
    from fruitfeat.pipeline import run_pipeline

    images, fit = Path(spec["images"]), spec["fit"]
    config = config_from_dict(job_config(images, Path(spec["output"]), Path(spec["weights"]), fit), "fit-choice")
    manifest = run_pipeline(config).manifest
    recorded = manifest["featurize"]["decode"]
    if recorded["fit"] != fit:
        raise RuntimeError(f"the run recorded fit {recorded['fit']!r}, asked for {fit!r}")
    run_dir = local_path(manifest["outputs"]["features"]).parent
    thumbs, phones = test_photos(images)
    scored = {"thumbnails": score(thumbs, run_dir), "phone": score(phones, run_dir)}
    test = manifest["recognition"]["test"]
    return {
        "fit": fit, "decode": recorded, "counts": manifest["counts"], **scored,
        "test_rows": test["rows"], "test_top1_all": test["top1_accuracy"], "test_top3_all": test["top3_accuracy"],
        # the same Test rows through the exported predictor: should equal test_top1_all
        "predict_top1_all": sum(s["n"] * s["top1"] for s in scored.values()) / (len(thumbs) + len(phones)),
        "featurize_s": manifest["stage_seconds"]["featurize"], "stage_seconds": manifest["stage_seconds"],
    }


def run_fit(images: Path, output: Path, weights: Path, fit: str, log: Path) -> dict[str, Any]:
    """``run_one`` in a fresh interpreter (its own JVM), run from the temp dir so Spark leaves nothing here."""
    spec = {"images": str(images), "output": str(output), "weights": str(weights), "fit": fit}
    with open(log, "a") as err:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--run-one", json.dumps(spec)],
                              check=False, stdout=subprocess.PIPE, stderr=err, text=True, cwd=log.parent)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise RuntimeError(f"the {fit} run failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1].removeprefix(RESULT_PREFIX))


def _decode_both(path: Path, fit: str) -> tuple[np.ndarray, np.ndarray]:
    data = path.read_bytes()
    return (decode_image(data, IMAGE_SIZE, DecodeOptions(fit=fit)),
            decode_image(data, IMAGE_SIZE, DecodeOptions(fit=fit, jpeg_draft=False)))


def draft_cosines(phones: list[Path], blob: bytes) -> dict[str, dict[str, float]]:
    """Per fit, cosine of each phone photo's features decoded in draft mode vs in full: how much the
    ~6x faster decode changes what the classifier sees."""
    from fruitfeat.featurize.onnx_export import OnnxInference

    network = OnnxInference(blob, intra_op_threads=0)
    out = {}
    for fit in FITS:
        with ThreadPoolExecutor(CORES) as pool:  # Pillow releases the GIL while decoding
            pairs = list(pool.map(_decode_both, phones, [fit] * len(phones)))
        draft, full = (np.stack(side) for side in zip(*pairs))
        a, b = network(draft).astype(np.float64), network(full).astype(np.float64)
        cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        out[fit] = {"n": len(cos), "mean": float(cos.mean()), "min": float(cos.min())}
    return out


def markdown(runs: list[dict[str, Any]], cosines: dict[str, dict[str, float]]) -> str:
    n_phone, n_thumb = runs[0]["phone"]["n"], runs[0]["thumbnails"]["n"]
    head = (f"| fit | Test top-1 all (n={runs[0]['test_rows']}) | thumbnails (n={n_thumb}) "
            f"| phone photos (n={n_phone}) | phone photos: mean probability of the true class "
            f"| featurize s | draft vs full cosine, mean / min |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        c = cosines[r["fit"]]
        lines.append(f"| {r['fit']} | {r['test_top1_all']:.3f} | {r['thumbnails']['top1']:.3f} "
                     f"| {r['phone']['top1']:.3f} | {r['phone']['true_class_probability']:.3f} "
                     f"| {r['featurize_s']:.1f} | {c['mean']:.4f} / {c['min']:.4f} |")
    return "\n".join(lines)


def leaders(runs: list[dict[str, Any]]) -> list[str]:
    """Every fit with the best phone-photo (top-1, true-class probability): a tie is reported as one."""
    key = {r["fit"]: (r["phone"]["top1"], round(r["phone"]["true_class_probability"], 3)) for r in runs}
    return [fit for fit, value in key.items() if value == max(key.values())]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fit-choice-") as tmp:
        work = Path(tmp)
        images, log = work / "images", work / "spark.log"
        start = time.perf_counter()
        files = generate(images, args.phone_per_class, args.train_phones, args.seed)
        generate_s = time.perf_counter() - start
        print(f"[fit] {files} images generated in {generate_s:.0f} s", flush=True)
        runs = []
        for fit in FITS:
            print(f"[fit] job with featurize.fit={fit} ...", flush=True)
            runs.append(run_fit(images, work / f"out-{fit}", args.weights, fit, log))
        print("[fit] draft vs full decode of the phone photos ...", flush=True)
        phones = sorted(images.rglob("phone_*.jpg"))
        cosines = draft_cosines(phones, args.weights.read_bytes())
    return {"images": files, "generate_s": round(generate_s, 1), "runs": runs, "draft_vs_full_cosine": cosines}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phone-per-class", type=int, default=8, help="phone photos per class (Test)")
    parser.add_argument("--train-phones", type=int, default=2, help="phone photos per class kept in Training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="MobileNetV2 .onnx (224 px)")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        print(RESULT_PREFIX + json.dumps(run_one(json.loads(args.run_one))), flush=True)
        return 0
    if args.phone_per_class < 1:
        parser.error("--phone-per-class must be >= 1: the measurement is about phone photos")
    args.weights = args.weights.resolve()
    if not args.weights.is_file():
        parser.error(f"weights {args.weights} not found: run make weights")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    start = time.perf_counter()
    result = measure(args)
    best = leaders(result["runs"])
    result |= {"timestamp": stamp, "phone_per_class": args.phone_per_class, "train_phones": args.train_phones, "seed": args.seed,
               "weights": str(args.weights), "cores": CORES, "best_on_phone_photos": best,
               "total_s": round(time.perf_counter() - start, 1)}
    print(markdown(result["runs"], result["draft_vs_full_cosine"]))
    out = RESULTS / f"fit-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"[fit] best on phone photos: {', '.join(best)}; {result['total_s']:.0f} s in all; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
