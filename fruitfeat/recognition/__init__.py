"""The fruit classifier: training, evaluation, the exported predictor, predict, plots and the report."""
