"""The sections of the job configuration: every knob the job reads, with its default and its check."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from fruitfeat.config.candidates import DEFAULT_CANDIDATES, CandidateList
from fruitfeat.config.regions import check_region
from fruitfeat.errors import RegionError
from fruitfeat.io.uris import is_remote, normalize_location

WEIGHTS_KEYWORDS = ("imagenet", "random")
FEATURE_DIM = 1280  # MobileNetV2 (alpha 1.0) after global average pooling




class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputConfig(_Section):
    path: str = Field(description="Root of a Fruits-360 style tree: <split>/<Class>/<image>")
    extensions: tuple[str, ...] = Field(default=("jpg", "jpeg", "png"), min_length=1, validate_default=True)
    max_file_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1, description="Larger files are quarantined as too_large, never read"
    )
    max_image_pixels: int = Field(
        default=89_478_485, ge=1, description="Larger images are quarantined as decompression_bomb (Pillow's limit)"
    )

    @field_validator("path")
    @classmethod
    def _location(cls, value: str) -> str:
        return normalize_location(value)

    @field_validator("extensions")
    @classmethod
    def _extensions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(sorted({e.lower().lstrip(".") for e in value}))
        bad = [e for e in cleaned if not e.isalnum()]
        if bad:
            raise ValueError(f"extensions must be alphanumeric, got {bad}")
        return cleaned


class OutputConfig(_Section):
    path: str = Field(description="Runs are written to <path>/runs/<run_id>/, published by <path>/_LATEST")
    keep_raw_features: bool = Field(
        default=False, description="Keep the 1280-d features of the run (raw_features/) next to the PCA output"
    )

    @field_validator("path")
    @classmethod
    def _location(cls, value: str) -> str:
        return normalize_location(value)


class ModelConfig(_Section):
    weights: str = Field(
        default="imagenet",
        description="'imagenet' (Keras download), 'random' (tests only), or a path/URI to the .onnx model "
        "(broadcast as it is) or the .weights.h5 file (converted on the driver each run)",
    )
    seed: int = Field(default=0, description="Seed of the 'random' weights")
    # onnxruntime by default: faster than tensorflow on the same cores and workers never import
    # TensorFlow (docs/choices.md).
    runtime: Literal["tensorflow", "onnxruntime"] = Field(
        default="onnxruntime",
        description="Inference engine of the Python workers: onnxruntime (default) or tensorflow",
    )

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: str) -> str:
        if value in WEIGHTS_KEYWORDS:
            return value
        location = normalize_location(value)
        if not location.endswith((".weights.h5", ".onnx")):
            raise ValueError(
                f"{value!r} is neither 'imagenet', 'random', a Keras weights file ending in .weights.h5 "
                "nor an ONNX model ending in .onnx (both written by `make weights`)"
            )
        return location

    @model_validator(mode="after")
    def _onnx_needs_onnxruntime(self) -> ModelConfig:
        if self.weights.endswith(".onnx") and self.runtime != "onnxruntime":
            raise ValueError("an .onnx model runs with model.runtime onnxruntime; name the .weights.h5 for tensorflow")
        return self


#: Images per inference call when ``featurize.batch_size`` is not set, per runtime (docs/benchmarks.md).
#: ONNX Runtime with one thread per worker: 1-4 images keep the activations in the core's cache; two
#: single-thread workers side by side ran 381-443 img/s at batch 1-2 and 304-345 at batch 16 (the job's
#: featurization 340-361 vs 292). TensorFlow's per-call overhead wants larger batches (16 = 64 there).
DEFAULT_BATCH_SIZES = {"onnxruntime": 2, "tensorflow": 16}


class FeaturizeConfig(_Section):
    image_size: int = Field(default=224, ge=32, le=1024, description="Side of the square network input")
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Images per inference call; None: the runtime's measured best (DEFAULT_BATCH_SIZES)",
    )
    arrow_batch_size: int = Field(
        default=64, ge=1, le=100_000, description="Rows per Arrow batch sent to a Python worker"
    )
    intra_op_threads: int = Field(
        default=1, ge=0, le=256, description="Inference threads per Python worker (0: the runtime decides)"
    )


class PCAConfig(_Section):
    k: int | float = Field(
        default=50,
        description="Components kept: a count (1-1280), or a variance target in (0, 1] such as 0.95",
    )

    @field_validator("k", mode="before")
    @classmethod
    def _not_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):  # YAML reads `yes` as True, which would pass as the count 1
            raise ValueError("must be a count or a variance target, not a boolean")
        return value

    @field_validator("k")
    @classmethod
    def _k(cls, value: int | float) -> int | float:
        if isinstance(value, int):
            if not 1 <= value <= FEATURE_DIM:
                raise ValueError(f"a component count must be between 1 and {FEATURE_DIM}, got {value}")
        elif not 0.0 < value <= 1.0:
            raise ValueError(f"a variance target must be in (0, 1], got {value}")
        return value


class ClassifierConfig(_Section):
    enabled: bool = Field(default=False, description="Train and evaluate the fruit classifier in the job")
    candidates: CandidateList = Field(
        default=DEFAULT_CANDIDATES,
        description="Models tried, best kept on validation; default: logistic regression x3 and an MLP",
    )
    validation_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = 0
    scatter_points_per_class: int = Field(default=200, ge=1, le=10_000)


class QuarantineConfig(_Section):
    max_fraction: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="The run fails (and is not published) when a larger share of the listed files is quarantined",
    )


class SparkConfig(_Section):
    master: str | None = Field(default=None, description="None: whatever spark-submit was given")
    app_name: str = "fruitfeat"
    files_open_cost_bytes: int = Field(
        default=65_536,
        ge=1,
        description="spark.sql.files.openCostInBytes; the 4 MiB default packs ~32 small images per task",
    )
    conf: dict[str, str] = Field(default_factory=dict, description="Extra Spark settings, applied verbatim")
    @field_validator("conf", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
        return value


class S3Config(_Section):
    """How Spark reaches S3 through S3A (``s3a://``); EMRFS (``s3://`` on EMR) needs none of it.

    No credentials here: S3A's default chain reads them from the environment or the instance profile.
    """

    endpoint: str | None = Field(default=None, description="e.g. http://127.0.0.1:5000 (moto, MinIO); None: AWS")
    path_style_access: bool = Field(default=False, description="bucket in the URL path, not the host (moto, MinIO)")
    region: str | None = Field(default=None, description="Region of the buckets; the emr profile requires an EU one")
    jars_dir: str | None = Field(
        default=None,
        description="hadoop-aws + aws-java-sdk-bundle jars added to spark.jars for s3a:// "
        "(default $FRUITFEAT_S3A_JARS; `make s3a-jars`); only when Python starts the JVM",
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urlparse(value.strip())
        if parsed.username or parsed.password:  # checked first so the value is never echoed
            raise ValueError("must not contain credentials")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.strip().rstrip("/")

    @field_validator("jars_dir")
    @classmethod
    def _jars_dir(cls, value: str | None) -> str | None:
        return str(Path(value).expanduser().resolve()) if value else None


class JobConfig(_Section):
    profile: Literal["local", "emr"] = Field(default="local", description="'emr' turns on the cluster guards")
    input: InputConfig
    output: OutputConfig
    model: ModelConfig = ModelConfig()
    featurize: FeaturizeConfig = FeaturizeConfig()
    pca: PCAConfig = PCAConfig()
    quarantine: QuarantineConfig = QuarantineConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    spark: SparkConfig = SparkConfig()
    s3: S3Config = S3Config()

    @property
    def inference_batch_size(self) -> int:
        """``featurize.batch_size``, or the measured best of ``model.runtime`` when it is not set."""
        return self.featurize.batch_size or DEFAULT_BATCH_SIZES[self.model.runtime]

    @model_validator(mode="after")
    def _profile_guards(self) -> JobConfig:
        if self.profile == "emr":
            if self.model.weights == "random":
                raise ValueError("model.weights 'random' is for tests; the emr profile needs real weights")
            for name, location in (("input.path", self.input.path), ("output.path", self.output.path)):
                if not is_remote(location):
                    raise ValueError(f"{name} must be an s3:// URI in the emr profile, got {location!r}")
            _check_eu_region(self.s3.region)
        return self


def _check_eu_region(region: str | None) -> None:
    """The photos, their EXIF and their file names are personal data: a cluster run stays in the EU."""
    if region is None:
        raise ValueError("s3.region must name the EU region of the buckets in the emr profile (e.g. eu-west-1)")

    try:
        check_region(region)
    except RegionError as exc:
        raise ValueError(f"s3.region: {exc}") from None
