"""PCA of the features: the one-pass covariance fit and the choice of k."""
