"""The feature store: features kept between runs, so a run featurizes only what is new."""
