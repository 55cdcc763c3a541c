"""The sections of the job configuration: every knob the job reads, with its default and its check.

What each key means is in the README's "Configuration" table; comments here say only why a check exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from fruitfeat.config.candidates import DEFAULT_CANDIDATES, CandidateList, NotBoolean
from fruitfeat.config.regions import check_region
from fruitfeat.errors import RegionError
from fruitfeat.io.uris import is_remote, normalize_location

WEIGHTS_KEYWORDS = ("imagenet", "random")
#: What `fruitfeat weights --precision int8` names the quantized model beside the fp32 ``.onnx``.
INT8_ONNX_SUFFIX = ".int8.onnx"
FEATURE_DIM = 1280  # MobileNetV2 (alpha 1.0) after global average pooling
#: Images per inference call when ``featurize.batch_size`` is not set: each runtime's best (docs/benchmarks.md).
DEFAULT_BATCH_SIZES = {"onnxruntime": 2, "tensorflow": 16}
#: A local path (made an absolute ``file://`` URI) or an S3 URI.
Location = Annotated[str, AfterValidator(normalize_location)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputConfig(_Section):
    path: Location
    extensions: tuple[str, ...] = Field(default=("jpg", "jpeg", "png"), min_length=1, validate_default=True)
    max_file_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=89_478_485, ge=1)  # Pillow's own limit

    @field_validator("extensions")
    @classmethod
    def _extensions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(sorted({e.lower().lstrip(".") for e in value}))
        bad = [e for e in cleaned if not e.isalnum()]
        if bad:
            raise ValueError(f"extensions must be alphanumeric, got {bad}")
        return cleaned


class OutputConfig(_Section):
    path: Location
    keep_raw_features: bool = False


class ModelConfig(_Section):
    weights: str = "imagenet"
    seed: int = 0
    # onnxruntime: faster than tensorflow on the same cores, and workers never import TensorFlow.
    runtime: Literal["tensorflow", "onnxruntime"] = "onnxruntime"
    # int8: the quantized ONNX model; the driver also checks the file's graph against this (resolve_weights).
    precision: Literal["fp32", "int8"] = "fp32"

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

    @model_validator(mode="after")
    def _precision_matches_the_file_name(self) -> ModelConfig:
        # Caught here, before a cluster starts; the driver checks the graph itself when it reads the file.
        named_int8 = self.weights.endswith(INT8_ONNX_SUFFIX)
        if self.precision == "int8" and not named_int8:
            raise ValueError(
                f"model.precision int8 needs model.weights naming a quantized model ending in {INT8_ONNX_SUFFIX} "
                f"(written by `fruitfeat weights --precision int8`), got {self.weights!r}"
            )
        if self.precision == "fp32" and named_int8:
            raise ValueError(f"{self.weights!r} is named as a quantized model: set model.precision: int8")
        return self


class FeaturizeConfig(_Section):
    image_size: int = Field(default=224, ge=32, le=1024)
    fit: Literal["squash", "crop", "pad"] = "crop"  # measured best on phone photos (docs/choices.md)
    jpeg_draft: bool = True
    batch_size: int | None = Field(default=None, ge=1, le=4096)  # None: DEFAULT_BATCH_SIZES
    arrow_batch_size: int = Field(default=64, ge=1, le=100_000)
    # Spark 3.5 counts Arrow batches in rows: this byte budget lowers the row count for large files.
    arrow_batch_bytes: int = Field(default=32 * 1024 * 1024, ge=1024 * 1024)
    intra_op_threads: int = Field(default=1, ge=0, le=256)


class PCAConfig(_Section):
    k: Annotated[int | float, NotBoolean] = 50  # a component count, or a variance target in (0, 1]

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
    enabled: bool = False
    candidates: CandidateList = DEFAULT_CANDIDATES
    validation_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = 0
    scatter_points_per_class: int = Field(default=200, ge=1, le=10_000)


class QuarantineConfig(_Section):
    max_fraction: float = Field(default=0.05, ge=0.0, le=1.0)


class StoreConfig(_Section):
    path: Location | None = None  # None: <output.path>/store
    incremental: bool = True
    # A run that leaves more segments than this merges all but the largest into one.
    compact_after_segments: int = Field(default=20, ge=2, le=10_000)


class SparkConfig(_Section):
    master: str | None = None
    app_name: str = "fruitfeat"
    files_open_cost_bytes: int = Field(default=65_536, ge=1)
    conf: dict[str, str] = Field(default_factory=dict)

    @field_validator("conf", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
        return value


class S3Config(_Section):
    """S3A settings (``s3a://``); EMRFS (``s3://`` on EMR) needs none. No credentials: S3A's chain finds them."""

    endpoint: str | None = None
    path_style_access: bool = False
    region: str | None = None
    jars_dir: str | None = None

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
    profile: Literal["local", "emr"] = "local"
    input: InputConfig
    output: OutputConfig
    model: ModelConfig = ModelConfig()
    featurize: FeaturizeConfig = FeaturizeConfig()
    pca: PCAConfig = PCAConfig()
    quarantine: QuarantineConfig = QuarantineConfig()
    store: StoreConfig = StoreConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    spark: SparkConfig = SparkConfig()
    s3: S3Config = S3Config()

    @property
    def inference_batch_size(self) -> int:
        """``featurize.batch_size``, or the best of ``model.runtime`` when it is not set."""
        return self.featurize.batch_size or DEFAULT_BATCH_SIZES[self.model.runtime]

    @property
    def store_path(self) -> str:
        """``store.path``, or ``store/`` under the output."""
        return self.store.path or f"{self.output.path.rstrip('/')}/store"

    @model_validator(mode="after")
    def _profile_guards(self) -> JobConfig:
        if self.profile != "emr":
            return self
        if self.model.weights == "random":
            raise ValueError("model.weights 'random' is for tests; the emr profile needs real weights")
        for name, location in (("input.path", self.input.path), ("output.path", self.output.path),
                               ("store.path", self.store_path)):
            if not is_remote(location):
                raise ValueError(f"{name} must be an s3:// URI in the emr profile, got {location!r}")
        # The photos, their EXIF and their file names are personal data: a cluster run stays in the EU.
        if self.s3.region is None:
            raise ValueError("s3.region must name the EU region of the buckets in the emr profile (e.g. eu-west-1)")
        try:
            check_region(self.s3.region)
        except RegionError as exc:
            raise ValueError(f"s3.region: {exc}") from None
        return self
