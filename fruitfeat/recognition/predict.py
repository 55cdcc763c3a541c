"""``fruitfeat predict PHOTO [PHOTO ...]``: the top-3 fruit classes of photos, with the published run.

No SparkSession: starting a JVM costs more than the whole prediction. The run's ONNX backbone (or
MobileNetV2 rebuilt from its weights) and ``predictor.npz`` run in-process, on photos decoded as the
executors decode them; an unreadable photo is one line on stderr and exit code 1, the others are predicted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fruitfeat.errors import PredictorError, PredictSetupError
from fruitfeat.featurize.decode import DecodeOptions, ImageDecodeError, decode_image
from fruitfeat.featurize.model import ONNX_MODEL_FILE, compile_inference
from fruitfeat.featurize.weights import file_sha256
from fruitfeat.recognition.predictor import PREDICTOR_FILE, load_predictor

DEFAULT_OUTPUT = "data/output"
LATEST = "_LATEST"
REMOTE_PREFIXES = ("s3://", "s3a://", "s3n://")
TOP = 3
#: Lines TensorFlow's C++ runtime writes to fd 2 before any setting can silence them (README "Notes").
TF_NOISE = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on")


@dataclass(frozen=True)
class PhotoResult:
    photo: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None


def _local(uri: str, what: str) -> Path:
    if uri.startswith(REMOTE_PREFIXES):
        raise PredictSetupError(f"{what} {uri} is on S3: copy the run locally and pass --run DIR")
    return Path(uri.removeprefix("file://"))


def read_json(path: Path) -> dict[str, Any] | None:
    """A run's JSON file (manifest.json, metrics.json), None if the run has none."""
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def resolve_run_dir(output: str | None = None, run: str | None = None) -> Path:
    """``--run`` as given, else the run that ``<output>/_LATEST`` publishes."""
    if run:
        path = _local(run, "run")
        if not path.is_dir():
            raise PredictSetupError(f"run directory {path} does not exist")
        return path
    latest = _local(output or DEFAULT_OUTPUT, "output") / LATEST
    try:
        pointer = json.loads(latest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PredictSetupError(f"{latest} does not exist: no published run (make run-local) or pass --run") from None
    except json.JSONDecodeError as exc:
        raise PredictSetupError(f"{latest} is not valid JSON ({exc})") from None
    return _local(pointer["path"], "published run")


def read_photo(path: str, image_size: int, options: DecodeOptions = DecodeOptions()) -> np.ndarray:
    """The network input of one photo, or ``ImageDecodeError`` with a one-line reason."""
    file = Path(path)
    if not file.exists():
        raise ImageDecodeError("missing_file", "no such file")
    if file.is_dir():
        raise ImageDecodeError("not_a_file", "is a directory")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ImageDecodeError("unreadable_file", exc.strerror or str(exc)) from None
    return decode_image(data, image_size, options)


@contextmanager
def tensorflow_noise_filtered() -> Iterator[None]:
    """Hold fd 2 in a temporary file while TensorFlow starts, then replay it without :data:`TF_NOISE`.

    ``TF_CPP_MIN_LOG_LEVEL`` does not reach the oneDNN notice; a real error written meanwhile still shows.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not any(noise in line for noise in TF_NOISE)]
            sys.stderr.write("".join(kept))


def weights_file(info: dict[str, Any], override: str | None) -> Path | None:
    """The local weights file to load (None for 'random'/'imagenet'), checked against the run's sha256."""
    if override is None and "uri" not in info:
        return None
    path = Path(override) if override else _local(str(info["uri"]), "the run's weights file (use --weights FILE)")
    if not path.is_file():
        raise PredictSetupError(f"weights file {path} does not exist (pass --weights FILE)")
    expected = info.get("file_sha256")
    if expected and file_sha256(path) != expected:
        raise PredictSetupError(
            f"weights file {path} is not the one the run used (sha256 differs from {expected[:12]}…): "
            "its features would not match the classifier"
        )
    return path


def build_network(info: dict[str, Any], image_size: int, override: str | None = None):
    """MobileNetV2 (no top, average-pooled) with the run's weights."""
    from fruitfeat.featurize.model import build_backbone

    path = weights_file(info, override)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads
    import keras

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path is not None:
            model = build_backbone(image_size)
            try:
                model.load_weights(str(path))
            except Exception as exc:  # Keras raises ValueError/KeyError/OSError for unfit files
                raise PredictSetupError(f"cannot load {path} into MobileNetV2: {type(exc).__name__}: {exc}") from None
            return model
        source = info.get("source")
        if source == "random":
            keras.utils.set_random_seed(int(info.get("seed", 0)))  # as fruitfeat.featurize.model.resolve_weights
            return build_backbone(image_size)
        if source == "imagenet":
            return build_backbone(image_size, weights="imagenet")
    raise PredictSetupError(f"the run's weights ({source!r}) cannot be rebuilt here: pass --weights FILE")


def run_onnx_model(run_dir: Path, manifest: dict[str, Any] | None) -> bytes | None:
    """The ONNX model the run's workers ran, if the run kept one: no TensorFlow import (~0.1 s, not ~3 s)."""
    path = run_dir / ONNX_MODEL_FILE
    if not path.is_file() or manifest is None:
        return None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != manifest.get("weights", {}).get("broadcast_sha256"):
        raise PredictSetupError(f"{path} does not match the run's manifest (sha256 differs): the run is damaged")
    return data


def predict_photos(
    photos: Sequence[str], run_dir: Path, weights_override: str | None = None
) -> list[PhotoResult]:
    """Top-3 ``(label, probability)`` per photo, in argument order; unreadable photos carry ``error``."""
    try:
        predictor = load_predictor(run_dir / PREDICTOR_FILE)
    except PredictorError as exc:
        raise PredictSetupError(str(exc)) from None
    decoded, results = {}, {}
    options = DecodeOptions.from_recorded(predictor.meta.get("decode"))  # as the run's executors decoded
    for position, photo in enumerate(photos):
        try:
            decoded[position] = read_photo(photo, predictor.image_size, options)
        except ImageDecodeError as exc:
            results[position] = PhotoResult(photo, error=f"{exc.reason.replace('_', ' ')}: {exc.message}")
    if decoded:
        manifest = read_json(run_dir / "manifest.json")
        images = np.stack(list(decoded.values()))
        onnx = None if weights_override else run_onnx_model(run_dir, manifest)
        if onnx is not None:
            from fruitfeat.featurize.onnx_export import OnnxInference

            features = OnnxInference(onnx, intra_op_threads=0)(images)
        else:
            info = (manifest or {}).get("weights") or predictor.weights
            with tensorflow_noise_filtered():
                network = build_network(info, predictor.image_size, weights_override)
                features = compile_inference(network, predictor.image_size)(images)
        for position, top in zip(decoded, predictor.top(predictor.predict_features(features), TOP)):
            results[position] = PhotoResult(photos[position], top)
    return [results[position] for position in range(len(photos))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fruitfeat predict", description="Top-3 fruit classes of photos, with the published run's classifier."
    )
    parser.add_argument("photos", nargs="+", metavar="PHOTO", help="image files (JPEG, PNG, any size or mode)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--output", help=f"output directory whose _LATEST names the run (default {DEFAULT_OUTPUT})")
    where.add_argument("--run", help="a run directory (runs/<run_id>) instead of the published one")
    parser.add_argument("--weights", help="local copy of the run's .weights.h5 (e.g. when the manifest names S3)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout instead of lines")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        run_dir = resolve_run_dir(args.output, args.run)
        results = predict_photos(args.photos, run_dir, args.weights)
    except PredictSetupError as exc:
        print(f"fruitfeat predict: error: {exc}", file=sys.stderr)
        return 1
    for result in results:
        if result.error is not None:
            print(f"fruitfeat predict: error: {result.photo}: {result.error}", file=sys.stderr)
        elif not args.json:  # photo.jpg: Banana 97.1% | Lime 1.8% | Kiwi 0.6%
            print(f"{result.photo}: " + " | ".join(f"{label} {p:.1%}" for label, p in result.top))
    if args.json:
        document = {
            "run": str(run_dir),
            "predictions": [
                {"photo": r.photo, "top3": [{"label": label, "probability": p} for label, p in r.top]}
                for r in results
                if r.error is None
            ],
            "errors": [{"photo": r.photo, "error": r.error} for r in results if r.error is not None],
        }
        print(json.dumps(document, indent=2))
    return 1 if any(result.error for result in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
