import math
from collections import defaultdict

import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.ml.functions import array_to_vector
from pyspark.sql import functions as F

from fruitfeat.config.candidates import (
    DEFAULT_CANDIDATES,
    LogisticRegressionCandidate,
    MLPCandidate,
)
from fruitfeat.errors import ClassifierInputError
from fruitfeat.recognition.classifier import (
    LABEL_INDEX_COL,
    PREDICTION_COL,
    PROBABILITY_COL,
    CandidateScore,
    predict_frame,
)
from fruitfeat.recognition.evaluate import evaluate
from fruitfeat.recognition.training import (
    IS_VALIDATION_COL,
    accuracy_and_log_loss,
    label_index,
    select_best,
    sorted_labels,
    train_classifier,
    validation_counts,
    with_validation_flag,
)

from .labelled_blobs import FRUITS, SCHEMA, blob_rows, separable_blobs


@pytest.fixture(scope="module")
def blobs(spark):
    return separable_blobs(spark)


@pytest.fixture(scope="module")
def trained_blobs(blobs):
    return train_classifier(blobs.where("split = 'Training'"), DEFAULT_CANDIDATES, validation_fraction=0.25, seed=3)


def test_label_order_is_sorted_and_explicit(trained_blobs):
    assert trained_blobs.labels == FRUITS
    assert trained_blobs.summary()["labels"] == list(FRUITS)
    assert trained_blobs.input_dim == 6 and trained_blobs.training_rows == 120


def test_every_candidate_is_scored_and_ties_go_to_the_lowest_log_loss(trained_blobs):
    scores = trained_blobs.scores
    assert [s.candidate for s in scores] == list(DEFAULT_CANDIDATES)
    # round(0.25 * 30) = 8 validation rows per class, never Test rows.
    assert [(s.fit_rows, s.validation_rows) for s in scores] == [(88, 32)] * 4
    # Separated blobs: every candidate is perfect, so log-loss decides; regularisation costs confidence.
    assert [s.validation_accuracy for s in scores] == [1.0] * 4
    lr0, lr001, lr01, _ = (s.validation_log_loss for s in scores)
    assert lr0 < 1e-6 < 0.01 < lr001 < lr01
    assert trained_blobs.candidate == LogisticRegressionCandidate(reg_param=0.0)


def test_the_candidate_with_the_best_validation_score_is_chosen(spark):
    """XOR quadrants: no linear model separates them, the perceptron does, and must be chosen."""
    rng = np.random.default_rng(1)
    rows = []
    for split, n in (("Training", 60), ("Test", 20)):
        for i in range(4 * n):
            x, y = rng.choice([-1.0, 1.0], size=2) * 3.0 + rng.normal(scale=0.6, size=2)
            rows.append((f"{split}/{i}.jpg", "Kiwi" if x * y > 0 else "Lime", split, [float(x), float(y)]))
    df = spark.createDataFrame(rows, SCHEMA)
    candidates = [LogisticRegressionCandidate(reg_param=0.0), MLPCandidate(hidden_layers=(8,))]
    trained = train_classifier(df.where("split = 'Training'"), candidates, validation_fraction=0.25, seed=0)
    linear, perceptron = trained.scores
    assert linear.validation_accuracy < 0.75 < 0.95 < perceptron.validation_accuracy
    assert trained.candidate == MLPCandidate(hidden_layers=(8,))
    accuracy = evaluate(predict_frame(df.where("split = 'Test'"), trained), trained.labels)["top1_accuracy"]
    assert accuracy > 0.95


def test_select_best_breaks_ties_by_log_loss_then_order():
    lr0, lr1, mlp = LogisticRegressionCandidate(), LogisticRegressionCandidate(reg_param=0.1), MLPCandidate()
    scores = [CandidateScore(lr0, 0.9, 0.5, 8, 2, 1.0), CandidateScore(lr1, 0.9, 0.3, 8, 2, 1.0),
              CandidateScore(mlp, 0.8, 0.1, 8, 2, 1.0)]
    assert select_best(scores).candidate == lr1
    tied = [CandidateScore(lr0, 0.9, 0.3, 8, 2, 1.0), CandidateScore(lr1, 0.9, 0.3, 8, 2, 1.0)]
    assert select_best(tied).candidate == lr0
    with pytest.raises(ClassifierInputError, match="no candidate was scored"):
        select_best([])


def test_shuffled_labels_give_chance_level_test_accuracy(spark):
    """The same kind of blobs with labels drawn at random: nothing to learn, Test accuracy stays near
    chance (25 %). With 100 Test rows the standard deviation at chance is 4.3 points; 0.40 is 3.5 of them."""
    rng = np.random.default_rng(2)
    centres = 10.0 * rng.normal(size=(4, 6))
    rows = blob_rows(rng, centres, {"Training": 40, "Test": 25}, 1.0)
    shuffled = [(path, FRUITS[rng.integers(4)], split, x) for path, _, split, x in rows]
    df = spark.createDataFrame(shuffled, SCHEMA)
    trained = train_classifier(df.where("split = 'Training'"), DEFAULT_CANDIDATES, validation_fraction=0.25, seed=0)
    accuracy = evaluate(predict_frame(df.where("split = 'Test'"), trained), trained.labels)["top1_accuracy"]
    assert accuracy < 0.40
    assert max(s.validation_accuracy for s in trained.scores) < 0.6


def first_paths_by_hash(df, fraction: float, seed: int) -> set[str]:
    """The validation rows worked out in Python: per label, the lowest round(fraction * n) of (hash, path)."""
    by_label = defaultdict(list)
    for r in df.select("label", "path", F.xxhash64("path", F.lit(seed)).alias("h")).collect():
        by_label[r.label].append((r.h, r.path))
    return {path for rows in by_label.values() for _, path in sorted(rows)[: round(fraction * len(rows))]}


def test_validation_split_is_stratified_seeded_and_independent_of_partitioning(blobs):
    training = blobs.where("split = 'Training'")

    def validation_paths(df, seed: int) -> set[str]:
        return {row.path for row in with_validation_flag(df, 0.2, seed).where(IS_VALIDATION_COL).collect()}

    seven = validation_paths(training.coalesce(1), 7)
    assert seven == first_paths_by_hash(training, 0.2, 7)
    assert validation_paths(training.repartition(5), 7) == seven
    assert validation_paths(training, 8) == first_paths_by_hash(training, 0.2, 8) != seven
    per_class = {label: sum(p.split("/")[1] == label for p in seven) for label in FRUITS}
    assert per_class == {label: 6 for label in FRUITS}  # round(0.2 * 30)
    flagged = with_validation_flag(training, 0.2, 7)
    assert_df_equality(flagged.drop(IS_VALIDATION_COL), training, ignore_row_order=True)


def test_tiny_classes_keep_a_fit_row_and_give_one_validation_row(spark):
    sizes = (("A", 1), ("B", 2), ("C", 3))
    rows = [(f"{label}/{i}", label, "Training", [float(i)]) for label, n in sizes for i in range(n)]
    flagged = with_validation_flag(spark.createDataFrame(rows, SCHEMA), 0.2, 0)
    counts = {r.label: r["count"] for r in flagged.where(IS_VALIDATION_COL).groupBy("label").count().collect()}
    assert counts == {"B": 1, "C": 1}


@pytest.mark.parametrize(
    ("fraction", "expected"),
    # n = 0, 1, 2, 3, 10, 30: at least 1 from 2 rows on, always one fit row left.
    [(0.2, [0, 0, 1, 1, 2, 6]), (0.9, [0, 0, 1, 2, 9, 27])],
)
def test_validation_counts(spark, fraction, expected):
    sizes = spark.createDataFrame([(n,) for n in (0, 1, 2, 3, 10, 30)], "n int").coalesce(1)
    counts = sizes.select(validation_counts(F.col("n"), fraction).alias("v")).collect()
    assert [r.v for r in counts] == expected


def test_labels_are_sorted_and_indexed_in_that_order(spark):
    df = spark.createDataFrame([("Lime",), ("Apple",), (None,), ("Apple",), ("Kiwi",)], "label string").coalesce(1)
    labels = sorted_labels(df)
    assert labels == ("Apple", "Kiwi", "Lime")
    indexed = df.select("label", label_index(labels[:2]))
    assert [tuple(r) for r in indexed.collect()] == [("Lime", None), ("Apple", 0.0), (None, None), ("Apple", 0.0),
                                                     ("Kiwi", 1.0)]
    assert indexed.schema[LABEL_INDEX_COL].metadata["ml_attr"] == {"type": "nominal", "num_vals": 2,
                                                                   "name": LABEL_INDEX_COL}


def test_accuracy_and_log_loss_of_hand_scored_rows(spark):
    rows = [  # label index, probabilities, prediction
        (0.0, [0.8, 0.2], 0.0),  # right, loss -ln 0.8
        (1.0, [0.6, 0.4], 0.0),  # wrong, loss -ln 0.4
        (1.0, [0.0, 1.0], 1.0),  # right and certain, loss 0
        (0.0, [0.0, 1.0], 1.0),  # certain and wrong: p = 0 clipped to 1e-15, loss 15 ln 10
    ]
    schema = f"{LABEL_INDEX_COL} double, p array<double>, {PREDICTION_COL} double"
    scored = spark.createDataFrame(rows, schema).withColumn(PROBABILITY_COL, array_to_vector("p"))
    accuracy, log_loss = accuracy_and_log_loss(scored)
    assert accuracy == 0.5
    assert log_loss == pytest.approx((-math.log(0.8) - math.log(0.4) + 0.0 + 15 * math.log(10)) / 4, rel=1e-12)
    assert accuracy_and_log_loss(scored.limit(0)) == (0.0, 0.0)


def test_unusable_inputs_are_refused(spark, blobs):
    one_class = blobs.where("label = 'Kiwi' AND split = 'Training'")
    with pytest.raises(ClassifierInputError, match="at least 2 classes in the Training rows, found \\['Kiwi'\\]"):
        train_classifier(one_class)
    with pytest.raises(ClassifierInputError, match="validation_fraction=1.0 must be in"):
        train_classifier(blobs, validation_fraction=1.0)
    with pytest.raises(ClassifierInputError, match="no classifier candidates given"):
        train_classifier(blobs, candidates=())
    singles = spark.createDataFrame([("a", "A", "Training", [1.0]), ("b", "B", "Training", [2.0])], SCHEMA)
    with pytest.raises(ClassifierInputError, match="the validation split is empty"):
        train_classifier(singles)
    no_features = spark.createDataFrame([("a", "A", "Training", None), ("b", "B", "Training", None)], SCHEMA)
    with pytest.raises(ClassifierInputError, match="no Training rows with features"):
        train_classifier(no_features)
