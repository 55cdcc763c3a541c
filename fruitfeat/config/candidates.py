"""The classifier candidates of ``classifier.candidates``: one typed model per family.

Why a union tagged by ``family`` rather than one model with optional fields: each family only
accepts its own settings, so ``hidden_layers`` on a logistic regression or a typo such as
``hidden`` is refused with the entry and the key, and an unknown family names the known ones.
The same models are the candidates the classifier trains, saves and exports, so the config and
the saved ``classifier.json`` use one format.

Only multinomial logistic regression and a multilayer perceptron are offered: both are a few
dense matrices that ``fruitfeat predict`` runs in numpy without Spark.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
)


def _not_empty(value: tuple[Any, ...]) -> tuple[Any, ...]:
    # Not Field(min_length=1): on a tuple, pydantic repeats that error under every bad item.
    if not value:
        raise ValueError("must list at least one")
    return value

class _CandidateBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("reg_param", "elastic_net_param", "max_iter", mode="before", check_fields=False)
    @classmethod
    def _not_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):  # YAML reads `yes` as True, which would pass as the number 1
            raise ValueError("must be a number, not a boolean")  # noqa: TRY004 (pydantic reports ValueError only)
        return value


class LogisticRegressionCandidate(_CandidateBase):
    """Multinomial logistic regression (Spark ML standardises its input itself)."""

    family: Literal["logistic_regression"] = "logistic_regression"
    reg_param: float = Field(default=0.0, ge=0.0, description="Regularisation strength")
    elastic_net_param: float = Field(default=0.0, ge=0.0, le=1.0, description="0: L2 penalty, 1: L1")
    max_iter: int = Field(default=100, ge=1)

    @property
    def name(self) -> str:
        return f"logistic_regression(reg={self.reg_param:g}, l1_ratio={self.elastic_net_param:g})"


class MLPCandidate(_CandidateBase):
    """Multilayer perceptron: sigmoid hidden layers, softmax output, on standardised input."""

    family: Literal["mlp"] = "mlp"
    hidden_layers: Annotated[tuple[Annotated[int, Field(ge=1)], ...], AfterValidator(_not_empty)] = Field(
        default=(64,), description="Units of each hidden layer"
    )
    max_iter: int = Field(default=200, ge=1)

    @property
    def name(self) -> str:
        return f"mlp(hidden={list(self.hidden_layers)})"


#: One model to try; ``family`` says which.
Candidate = Annotated[LogisticRegressionCandidate | MLPCandidate, Field(discriminator="family")]

DEFAULT_CANDIDATES: tuple[Candidate, ...] = (
    LogisticRegressionCandidate(reg_param=0.0),
    LogisticRegressionCandidate(reg_param=0.01),
    LogisticRegressionCandidate(reg_param=0.1),
    MLPCandidate(hidden_layers=(64,)),
)

#: ``classifier.candidates``: at least one candidate.
CandidateList = Annotated[tuple[Candidate, ...], AfterValidator(_not_empty)]

_CANDIDATE = TypeAdapter(Candidate)


def candidate_from_dict(data: dict[str, Any]) -> Candidate:
    """A candidate from its ``model_dump`` (or a config entry); raises pydantic's ValidationError."""
    return _CANDIDATE.validate_python(data)


__all__ = [
    "DEFAULT_CANDIDATES",
    "Candidate",
    "CandidateList",
    "LogisticRegressionCandidate",
    "MLPCandidate",
    "candidate_from_dict",
]
