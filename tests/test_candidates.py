import subprocess
import sys

import pytest
from pydantic import ValidationError

from fruitfeat.config import ConfigError, config_from_dict
from fruitfeat.config.candidates import (
    DEFAULT_CANDIDATES,
    LogisticRegressionCandidate,
    MLPCandidate,
    candidate_from_dict,
)
from fruitfeat.config.sections import ClassifierConfig

BASE = {"input": {"path": "/data/in"}, "output": {"path": "/data/out"}}


def classifier_section(candidates: list[dict]) -> ClassifierConfig:
    return config_from_dict({**BASE, "classifier": {"candidates": candidates}}).classifier


def test_defaults_are_three_logistic_regressions_and_an_mlp():
    assert [c.name for c in config_from_dict(BASE).classifier.candidates] == [
        "logistic_regression(reg=0, l1_ratio=0)",
        "logistic_regression(reg=0.01, l1_ratio=0)",
        "logistic_regression(reg=0.1, l1_ratio=0)",
        "mlp(hidden=[64])",
    ]
    assert [c.max_iter for c in DEFAULT_CANDIDATES] == [100, 100, 100, 200]


def test_config_entries_become_typed_candidates():
    entries = [{"family": "mlp", "hidden_layers": [32, 8]}, {"family": "logistic_regression", "reg_param": 0.5,
                                                             "elastic_net_param": 1, "max_iter": 7}]
    assert classifier_section(entries).candidates == (
        MLPCandidate(hidden_layers=(32, 8), max_iter=200),
        LogisticRegressionCandidate(reg_param=0.5, elastic_net_param=1.0, max_iter=7),
    )


def test_a_candidate_round_trips_through_its_json_dump():
    for candidate in (*DEFAULT_CANDIDATES, MLPCandidate(hidden_layers=(3, 2), max_iter=9)):
        assert candidate_from_dict(candidate.model_dump(mode="json")) == candidate
    assert MLPCandidate(hidden_layers=(3, 2)).model_dump(mode="json") == {
        "family": "mlp", "hidden_layers": [3, 2], "max_iter": 200
    }


@pytest.mark.parametrize(
    ("candidates", "field", "reason"),
    [
        ([{"family": "svm"}], "classifier.candidates.0", "'svm' found using 'family' does not match any of the "
                                                         "expected tags: 'logistic_regression', 'mlp'"),
        ([{"reg_param": 0.1}], "classifier.candidates.0", "Unable to extract tag using discriminator 'family'"),
        ([{"family": "mlp", "hidden": [3]}], "classifier.candidates.0.mlp.hidden", "unknown key"),
        ([{"family": "logistic_regression", "hidden_layers": [3]}],
         "classifier.candidates.0.logistic_regression.hidden_layers", "unknown key"),
        ([{"family": "logistic_regression", "reg_param": True}],
         "classifier.candidates.0.logistic_regression.reg_param", "not a boolean"),
        ([{"family": "logistic_regression", "elastic_net_param": 1.5}],
         "classifier.candidates.0.logistic_regression.elastic_net_param", "less than or equal to 1"),
        ([{"family": "mlp", "hidden_layers": []}], "classifier.candidates.0.mlp.hidden_layers", "at least one"),
        ([{"family": "mlp", "hidden_layers": [4, 0]}], "classifier.candidates.0.mlp.hidden_layers.1",
         "greater than or equal to 1"),
        ([{"family": "mlp", "max_iter": 0}], "classifier.candidates.0.mlp.max_iter", "greater than or equal to 1"),
        ([], "classifier.candidates", "must list at least one"),
    ],
)
def test_bad_candidates_name_the_entry_and_the_reason(candidates, field, reason):
    with pytest.raises(ConfigError) as err:
        classifier_section(candidates)
    lines = str(err.value).splitlines()[1:]
    assert len(lines) == 1, lines  # one error per mistake, not one per layer of the union
    assert lines[0].strip().startswith(f"{field}: ") and reason in lines[0]


def test_candidates_are_frozen_and_refuse_unknown_keys():
    with pytest.raises(ValidationError, match="frozen"):
        DEFAULT_CANDIDATES[0].reg_param = 1.0
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        candidate_from_dict({"family": "mlp", "reg_param": 0.1})


def test_the_config_does_not_import_the_recognition_stage():
    code = "import sys, fruitfeat.config; print(sorted(m for m in sys.modules if m.startswith('fruitfeat.recognition')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
