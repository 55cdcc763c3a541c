"""Locations as the job uses them: local paths become absolute ``file://`` URIs, S3 stays as given.

A leaf module (no fruitfeat imports) so that the config, storage and the stages share one reading.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

#: URI schemes Spark can read here: local disk, EMRFS on EMR (s3), the Hadoop S3A client elsewhere.
REMOTE_SCHEMES = ("s3", "s3a")


def is_remote(uri: str) -> bool:
    return urlparse(uri).scheme in REMOTE_SCHEMES


def normalize_location(value: str) -> str:
    """Local paths become absolute ``file://`` URIs so Spark, the manifest and logs agree on them."""
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    scheme = urlparse(value).scheme
    if scheme in REMOTE_SCHEMES:
        if not urlparse(value).netloc:
            raise ValueError(f"{value!r} has no bucket name")
        return value.rstrip("/")
    if scheme == "file":
        value = value.removeprefix("file://")
    elif scheme and len(scheme) > 1:  # a one-letter "scheme" is a Windows drive
        raise ValueError(f"unsupported scheme {scheme!r}: use a local path, s3:// (EMR) or s3a://")
    # Not Path.as_uri(): Hadoop would read its %-escapes (e.g. %20 for a space) literally.
    return "file://" + str(Path(value).expanduser().resolve())


def local_path(uri: str) -> Path | None:
    """The filesystem path of a ``file://`` URI, or None for object-store URIs."""
    return Path(uri.removeprefix("file://")) if uri.startswith("file://") else None
