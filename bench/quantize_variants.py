"""int8 variants of the real network: fidelity to fp32 and speed, the measurement behind the defaults of
``fruitfeat.featurize.quantize.QuantizeSettings``.

    python bench/quantize_variants.py [VARIANT ...]

Draws the sample data (49 Training thumbnails and 1 phone photo per class for calibration, as
`fruitfeat weights --precision int8` does by default; 20 Test thumbnails and 1 phone photo per class
held out), quantizes the fp32 model `make weights` built with each variant, and reports the quality
gate's figures on the calibration sample's held-out quarter, the same figures on the Test images, and
single-thread img/s at batch 2. Prints a markdown table and writes bench/results/quantize-<timestamp>.json.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fruitfeat.featurize.calibration import sample_tree
from fruitfeat.featurize.decode import decode_image
from fruitfeat.featurize.onnx_export import OnnxInference
from fruitfeat.featurize.quantize import QuantizeSettings, _quantize, features, fidelity
from fruitfeat.sample_data import generate_sample_dataset

ROOT = Path(__file__).resolve().parents[1]
FP32_MODEL = ROOT / "data" / "weights" / "mobilenetv2_notop.onnx"
SIZE = 224


def throughput(blob: bytes, images: np.ndarray, rounds: int = 3) -> float:
    """Best of ``rounds`` passes, one thread, batch 2: a Spark Python worker's layout."""
    infer = OnnxInference(blob, 1)
    infer(images[:2])
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(0, len(images), 2):
            infer(images[i : i + 2])
        best = max(best, len(images) / (time.perf_counter() - start))
    return best


def variants(full, small) -> dict:
    return {
        "percentile 99.99 (default)": (QuantizeSettings(), full),
        "percentile 99.99, 100-image sample": (QuantizeSettings(), small),
        "percentile 99.999": (QuantizeSettings(percentile=99.999), full),
        "percentile 99.9": (QuantizeSettings(percentile=99.9), full),
        "minmax": (QuantizeSettings(method="minmax"), full),
        "minmax, no pre-processing": (QuantizeSettings(method="minmax", preprocess=False), full),
        "minmax, first conv fp32": (QuantizeSettings(method="minmax", keep_fp32=("head",)), full),
        "minmax, last layers fp32": (QuantizeSettings(method="minmax", keep_fp32=("tail",)), full),
        "minmax, int8 symmetric activations": (
            QuantizeSettings(method="minmax", activation_type="qint8", activation_symmetric=True), full),
        "entropy": (QuantizeSettings(method="entropy"), full),
    }


def main(only: list[str]) -> int:
    if not FP32_MODEL.exists():
        raise SystemExit(f"{FP32_MODEL} is missing: run `make weights`")
    fp32 = FP32_MODEL.read_bytes()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    with tempfile.TemporaryDirectory(prefix="quantize-variants-") as tmp:
        root = Path(tmp) / "sample"
        generate_sample_dataset(root, train_per_class=49, test_per_class=20, phone_per_class=1)
        full, small = sample_tree(root, 300, 0.25, SIZE), sample_tree(root, 100, 0.25, SIZE)
        test_files = sorted((root / "Test").rglob("*.jpg"))
        test = np.stack([decode_image(p.read_bytes(), SIZE) for p in test_files])
    labels = tuple(p.parent.name for p in test_files)
    fp32_test = features(fp32, test)
    rows = [{"variant": "fp32", "bytes": len(fp32), "img_s": throughput(fp32, test)}]
    for name, (settings, sample) in variants(full, small).items():
        if only and name not in only:
            continue
        start = time.perf_counter()
        blob, _ = _quantize(fp32, sample.calibration, settings)
        row = {"variant": name, "calibration_images": len(sample.calibration), "build_s": time.perf_counter() - start,
               "bytes": len(blob),
               "gate": fidelity(features(fp32, sample.holdout.images), features(blob, sample.holdout.images),
                                sample.holdout.labels),
               "test": fidelity(fp32_test, features(blob, test), labels), "img_s": throughput(blob, test)}
        rows.append(row)
        print(f"[quantize] {name}: test mean cosine {row['test']['mean_cosine']:.4f}, {row['img_s']:.0f} img/s",
              flush=True)
    lines = ["| variant | calibration images | MB | gate cosine mean / p5 | Test cosine mean / p5 / min | img/s (1 thread) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "gate" not in r:
            lines.append(f"| {r['variant']} | | {r['bytes'] / 1e6:.2f} | | | {r['img_s']:.0f} |")
            continue
        g, t = r["gate"], r["test"]
        lines.append(f"| {r['variant']} | {r['calibration_images']} | {r['bytes'] / 1e6:.2f} | "
                     f"{g['mean_cosine']:.3f} / {g['p5_cosine']:.3f} | "
                     f"{t['mean_cosine']:.3f} / {t['p5_cosine']:.3f} / {t['min_cosine']:.3f} | {r['img_s']:.0f} |")
    print("\n".join(lines))
    out = ROOT / "bench" / "results" / f"quantize-{stamp}.json"
    out.write_text(json.dumps({"timestamp": stamp, "test_images": len(test), "rows": rows}, indent=2, default=str) + "\n")
    print(f"[quantize] wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
