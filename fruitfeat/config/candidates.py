"""The classifier candidates of ``classifier.candidates``: one typed model per family.

A union tagged by ``family``, so each family accepts only its own settings (``hidden_layers`` on a
logistic regression, or a typo, names the entry and the key). The config and the saved
``classifier.json`` share this format. Both families are a few dense matrices that ``fruitfeat
predict`` runs in numpy.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
)


def _not_empty(value: tuple[Any, ...]) -> tuple[Any, ...]:
    # Not Field(min_length=1): on a tuple, pydantic repeats that error under every bad item.
    if not value:
        raise ValueError("must list at least one")
    return value


def _not_boolean(value: Any) -> Any:
    if isinstance(value, bool):  # YAML reads `yes` as True, which would pass as the number 1
        raise ValueError("must be a number, not a boolean")  # noqa: TRY004 (pydantic reports ValueError only)
    return value


#: For numbers read from YAML.
NotBoolean = BeforeValidator(_not_boolean)


class _CandidateBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogisticRegressionCandidate(_CandidateBase):
    """Multinomial logistic regression (Spark ML standardises its input itself)."""

    family: Literal["logistic_regression"] = "logistic_regression"
    reg_param: Annotated[float, NotBoolean, Field(ge=0.0)] = 0.0
    elastic_net_param: Annotated[float, NotBoolean, Field(ge=0.0, le=1.0)] = 0.0  # 0: L2 penalty, 1: L1
    max_iter: Annotated[int, NotBoolean, Field(ge=1)] = 100

    @property
    def name(self) -> str:
        return f"logistic_regression(reg={self.reg_param:g}, l1_ratio={self.elastic_net_param:g})"


class MLPCandidate(_CandidateBase):
    """Multilayer perceptron: sigmoid hidden layers, softmax output, on standardised input."""

    family: Literal["mlp"] = "mlp"
    hidden_layers: Annotated[tuple[Annotated[int, Field(ge=1)], ...], AfterValidator(_not_empty)] = (64,)
    max_iter: Annotated[int, NotBoolean, Field(ge=1)] = 200

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
