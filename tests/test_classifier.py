import numpy as np
import pytest
from chispa import assert_df_equality

from fruitfeat.recognition.classifier import (
    DEFAULT_CANDIDATES,
    Candidate,
    CandidateScore,
    ClassifierInputError,
    load_classifier,
    predict_frame,
    save_classifier,
    select_best,
    train_classifier,
    with_validation_flag,
)
from fruitfeat.recognition.evaluate import evaluate
from fruitfeat.recognition.predictor import (
    export_predictor,
    load_predictor,
    unpack_mlp_weights,
)

from .pca_models import projected, spark_pca

FRUITS = ("Apple", "Banana", "Kiwi", "Lime")
SCHEMA = "path string, label string, split string, features array<float>"


def blob_rows(rng, centres, per_split: dict[str, int], spread: float, labels=FRUITS) -> list[tuple]:
    rows = []
    for split, n in per_split.items():
        for c, label in enumerate(labels):
            for i in range(n):
                x = centres[c] + spread * rng.normal(size=centres.shape[1])
                rows.append((f"{split}/{label}/{i}.jpg", label, split, [float(v) for v in x]))
    return rows


@pytest.fixture(scope="module")
def blobs(spark):
    """4 well separated gaussian blobs in 6-d: 30 Training and 10 Test rows per class."""
    rng = np.random.default_rng(0)
    centres = 10.0 * rng.normal(size=(4, 6))
    return spark.createDataFrame(blob_rows(rng, centres, {"Training": 30, "Test": 10}, 1.0), SCHEMA)


@pytest.fixture(scope="module")
def trained_blobs(blobs):
    return train_classifier(blobs.where("split = 'Training'"), DEFAULT_CANDIDATES, validation_fraction=0.25, seed=3)


def test_separable_blobs_are_recognised_without_error(blobs, trained_blobs):
    predictions = predict_frame(blobs.where("split = 'Test'"), trained_blobs)
    assert predictions.columns == ["path", "label", "split", "features", "prediction", "probability", "top3"]
    metrics = evaluate(predictions, trained_blobs.labels)
    assert metrics["rows"] == 40 and metrics["top1_accuracy"] == 1.0 and metrics["macro_f1"] == 1.0
    for row in predictions.collect():
        assert row.top3[0] == row.prediction and len(set(row.top3)) == 3
        assert sum(row.probability) == pytest.approx(1.0)
        assert row.probability[FRUITS.index(row.prediction)] == max(row.probability)


def test_label_order_is_sorted_and_explicit(trained_blobs):
    assert trained_blobs.labels == FRUITS
    assert trained_blobs.summary()["labels"] == list(FRUITS)
    assert trained_blobs.input_dim == 6 and trained_blobs.training_rows == 120


def test_every_candidate_is_scored_on_the_validation_split(trained_blobs):
    scores = trained_blobs.scores
    assert [s.candidate for s in scores] == list(DEFAULT_CANDIDATES)
    # round(0.25 * 30) = 8 validation rows per class, never Test rows.
    assert all(s.validation_rows == 32 and s.fit_rows == 88 for s in scores)
    assert all(0.0 <= s.validation_accuracy <= 1.0 and s.validation_log_loss >= 0.0 for s in scores)
    assert trained_blobs.candidate == select_best(scores).candidate
    chosen = next(s for s in scores if s.candidate == trained_blobs.candidate)
    assert chosen.validation_accuracy == max(s.validation_accuracy for s in scores)


def test_the_candidate_with_the_best_validation_score_is_chosen(spark):
    """XOR quadrants: no linear model separates them, the perceptron does, and must be chosen."""
    rng = np.random.default_rng(1)
    rows = []
    for split, n in (("Training", 60), ("Test", 20)):
        for i in range(4 * n):
            x, y = rng.choice([-1.0, 1.0], size=2) * 3.0 + rng.normal(scale=0.6, size=2)
            rows.append((f"{split}/{i}.jpg", "Kiwi" if x * y > 0 else "Lime", split, [float(x), float(y)]))
    df = spark.createDataFrame(rows, SCHEMA)
    candidates = [Candidate("logistic_regression", reg_param=0.0), Candidate("mlp", hidden_layers=(8,))]
    trained = train_classifier(df.where("split = 'Training'"), candidates, validation_fraction=0.25, seed=0)
    linear, perceptron = trained.scores
    assert linear.validation_accuracy < 0.75 < 0.95 < perceptron.validation_accuracy
    assert trained.candidate.family == "mlp"
    accuracy = evaluate(predict_frame(df.where("split = 'Test'"), trained), trained.labels)["top1_accuracy"]
    assert accuracy > 0.95


def test_select_best_breaks_ties_by_log_loss_then_order():
    lr0, lr1, mlp = Candidate("logistic_regression"), Candidate("logistic_regression", 0.1), Candidate("mlp")
    scores = [CandidateScore(lr0, 0.9, 0.5, 8, 2, 1.0), CandidateScore(lr1, 0.9, 0.3, 8, 2, 1.0),
              CandidateScore(mlp, 0.8, 0.1, 8, 2, 1.0)]
    assert select_best(scores).candidate == lr1
    tied = [CandidateScore(lr0, 0.9, 0.3, 8, 2, 1.0), CandidateScore(lr1, 0.9, 0.3, 8, 2, 1.0)]
    assert select_best(tied).candidate == lr0


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


def test_validation_split_is_stratified_and_deterministic(spark, blobs):
    training = blobs.where("split = 'Training'")

    def validation_paths(seed: int) -> set[str]:
        flagged = with_validation_flag(training, 0.2, seed)
        return {row.path for row in flagged.where("_clf_is_validation").collect()}

    first, again, other = validation_paths(7), validation_paths(7), validation_paths(8)
    assert first == again and first != other
    per_class = {label: sum(p.split("/")[1] == label for p in first) for label in FRUITS}
    assert per_class == {label: 6 for label in FRUITS}  # round(0.2 * 30)
    flagged = with_validation_flag(training, 0.2, 7)
    assert_df_equality(flagged.drop("_clf_is_validation"), training, ignore_row_order=True)


def test_tiny_classes_keep_a_fit_row_and_give_one_validation_row(spark):
    sizes = (("A", 1), ("B", 2), ("C", 3))
    rows = [(f"{label}/{i}", label, "Training", [float(i)]) for label, n in sizes for i in range(n)]
    flagged = with_validation_flag(spark.createDataFrame(rows, SCHEMA), 0.2, 0)
    counts = {r.label: r["count"] for r in flagged.where("_clf_is_validation").groupBy("label").count().collect()}
    assert counts == {"B": 1, "C": 1}


def test_unusable_inputs_are_refused(spark, blobs):
    one_class = blobs.where("label = 'Kiwi' AND split = 'Training'")
    with pytest.raises(ClassifierInputError, match="at least 2 classes"):
        train_classifier(one_class)
    with pytest.raises(ClassifierInputError, match="validation_fraction"):
        train_classifier(blobs, validation_fraction=1.0)
    with pytest.raises(ValueError, match="unknown classifier candidate key"):
        Candidate.from_mapping({"family": "mlp", "hidden": [3]})
    with pytest.raises(ValueError, match="unknown classifier family"):
        Candidate("random_forest")


def test_mlp_weights_unpack_like_sparks_column_major_layers():
    flat = np.arange(2 * 3 + 3 + 3 * 2 + 2, dtype=np.float64)
    (w0, b0), (w1, b1) = unpack_mlp_weights([2, 3, 2], flat)
    assert w0.shape == (2, 3) and b0.tolist() == [6.0, 7.0, 8.0]
    # Spark's first layer is a 3 x 2 column-major matrix W: W[i, j] = flat[i + 3 j]; numpy holds W.T.
    assert all(w0[j, i] == flat[i + 3 * j] for i in range(3) for j in range(2))
    assert w1.shape == (3, 2) and b1.tolist() == [15.0, 16.0]
    with pytest.raises(ValueError, match="need 17 weights, got 16"):
        unpack_mlp_weights([2, 3, 2], flat[:-1])


@pytest.fixture(scope="module")
def overlapping(spark):
    """12-d raw features of 4 overlapping blobs (probabilities well inside (0, 1)), PCA to k = 6."""
    rng = np.random.default_rng(4)
    centres = 0.6 * rng.normal(size=(4, 12)) + 5.0
    raw = spark.createDataFrame(blob_rows(rng, centres, {"Training": 25, "Test": 10}, 1.5), SCHEMA).cache()
    pca = spark_pca(raw, 6)
    return raw, pca, projected(raw, pca).cache()


@pytest.mark.parametrize(
    "candidate",
    # Few MLP iterations keep its probabilities unsaturated: the comparison is about arithmetic, not fit.
    [Candidate("logistic_regression", reg_param=0.01), Candidate("mlp", hidden_layers=(16,), max_iter=20)],
    ids=["lr", "mlp"],
)
def test_numpy_predictor_reproduces_spark_probabilities(overlapping, candidate, tmp_path):
    raw, pca, features = overlapping
    trained = train_classifier(features.where("split = 'Training'"), [candidate], validation_fraction=0.2, seed=5)
    assert trained.candidate == candidate
    spark_rows = sorted(predict_frame(features, trained).collect(), key=lambda r: r.path)
    raw_by_path = {r.path: r.features for r in raw.collect()}

    weights = {"source": "random", "seed": 0}
    meta = export_predictor(trained, pca, tmp_path / "predictor.npz", image_size=32, weights=weights)
    predictor = load_predictor(tmp_path / "predictor.npz")
    assert predictor.labels == FRUITS and predictor.k == 6 and predictor.feature_dim == 12
    assert meta["classifier"]["family"] == candidate.family and predictor.weights == weights

    expected = np.array([r.probability for r in spark_rows])
    assert np.mean(expected.max(axis=1) < 0.99) > 0.25  # mostly unsaturated: the comparison means something
    from_projection = predictor.predict_projected(np.array([r.features for r in spark_rows], dtype=np.float32))
    np.testing.assert_allclose(from_projection, expected, rtol=0, atol=1e-6)
    from_raw = predictor.predict_features(np.array([raw_by_path[r.path] for r in spark_rows], dtype=np.float32))
    np.testing.assert_allclose(from_raw, expected, rtol=0, atol=1e-6)
    assert [[label for label, _ in top] for top in predictor.top(from_raw)] == [list(r.top3) for r in spark_rows]


def test_saved_classifier_predicts_the_same(spark, overlapping, tmp_path):
    _, _, features = overlapping
    trained = train_classifier(
        features.where("split = 'Training'"), [Candidate("mlp", hidden_layers=(4,))], validation_fraction=0.2
    )
    save_classifier(spark, trained, f"file://{tmp_path}/classifier")
    loaded = load_classifier(spark, f"file://{tmp_path}/classifier")
    assert loaded.labels == trained.labels and loaded.candidate == trained.candidate
    assert loaded.scores == trained.scores
    assert_df_equality(
        predict_frame(features, loaded).select("path", "prediction", "top3"),
        predict_frame(features, trained).select("path", "prediction", "top3"),
        ignore_row_order=True,
    )
