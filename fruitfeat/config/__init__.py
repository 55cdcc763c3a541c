"""Typed job configuration, loaded from YAML and validated before Spark starts.

A bad file or value must fail in milliseconds with the file, the field and the reason, not twenty
minutes into a cluster run; so every knob the job reads is declared in ``sections``, and unknown
keys are errors.
"""

from fruitfeat.config.loading import (
    apply_overrides,
    config_from_dict,
    find_credentials,
    load_config,
)
from fruitfeat.config.sections import FEATURE_DIM, JobConfig
from fruitfeat.errors import ConfigError

__all__ = ["FEATURE_DIM", "ConfigError", "JobConfig", "apply_overrides", "config_from_dict", "find_credentials", "load_config"]
