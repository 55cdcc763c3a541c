"""Converted model payloads kept between runs, so the driver converts a network once, not every run.

Why: building the Keras model and converting it to ONNX costs the driver a TensorFlow import and
several seconds (4-9 s measured here) on every run, for a result that only changes when the
weights, the input size, the runtime or the converter change. The key is computed from exactly
those (the weights file's sha256, never its name), without importing TensorFlow, so a cache hit
leaves the driver TensorFlow-free. The blob's sha256 is checked on every load; a mismatch is
logged and the payload is rebuilt and stored again.

The cache holds model weights only (no images, no personal data). Default location:
``<output.path>/_cache/models/`` beside ``runs/``, on local disk or S3 alike (``model.cache``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from fruitfeat.featurize.model import WeightsPayload

log = logging.getLogger(__name__)

#: Packages whose version changes what a conversion produces.
_CONVERTER_DISTRIBUTIONS = ("tensorflow-cpu", "tensorflow", "keras", "tf2onnx", "onnx")
#: Bumped when the payload format or the conversion code changes.
FORMAT_VERSION = 1


def _versions() -> dict[str, str]:
    versions = {}
    for dist in _CONVERTER_DISTRIBUTIONS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def payload_key(source: dict[str, Any], image_size: int, runtime: str, opset: int | None) -> str:
    """Digest of everything that determines the payload; ``source`` names the weights by content."""
    described = {
        "format": FORMAT_VERSION,
        "source": source,
        "image_size": image_size,
        "runtime": runtime,
        "opset": opset,
        "versions": _versions(),
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:40]


@dataclass(frozen=True)
class PayloadCache:
    """A directory of ``<key>.bin`` (the broadcast blob) and ``<key>.json`` (what it is, written last)."""

    root: str
    read_bytes: Callable[[str], bytes]
    write_bytes: Callable[[str, bytes], None]

    def _uri(self, key: str, suffix: str) -> str:
        return f"{self.root.rstrip('/')}/{key}{suffix}"

    def load(self, key: str) -> WeightsPayload | None:
        try:
            meta = json.loads(self.read_bytes(self._uri(key, ".json")))
            blob = self.read_bytes(self._uri(key, ".bin"))
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as exc:
            log.warning("model cache entry %s is unreadable (%s): converting again", key, exc)
            return None
        if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
            log.warning("model cache entry %s does not match its recorded sha256: converting again", key)
            return None
        return WeightsPayload(
            blob, meta["sha256"], meta["image_size"], meta.get("provenance", {}), meta["runtime"],
            meta.get("weights_sha256"),
        )

    def store(self, key: str, payload: WeightsPayload) -> None:
        meta = {
            "sha256": payload.sha256,
            "image_size": payload.image_size,
            "runtime": payload.runtime,
            "weights_sha256": payload.weights_sha256,
            "provenance": payload.provenance,
        }
        try:
            self.write_bytes(self._uri(key, ".bin"), payload.blob)
            self.write_bytes(self._uri(key, ".json"), json.dumps(meta, indent=2, sort_keys=True).encode())
        except Exception as exc:  # a read-only cache location (OSError, or a JVM error for S3) must not fail the run
            log.warning("could not store the converted model in %s (%s); the next run converts again", self.root, exc)
