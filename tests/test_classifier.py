import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from fruitfeat.config.candidates import LogisticRegressionCandidate, MLPCandidate
from fruitfeat.recognition.classifier import (
    SELECTION_RULE,
    CandidateScore,
    TrainedClassifier,
    load_classifier,
    predict_frame,
    save_classifier,
    top_labels,
)
from fruitfeat.recognition.evaluate import evaluate
from fruitfeat.recognition.training import train_classifier

from .labelled_blobs import FRUITS, separable_blobs


@pytest.fixture(scope="module")
def blobs(spark):
    return separable_blobs(spark)


@pytest.fixture(scope="module")
def trained_blobs(blobs):
    candidates = [LogisticRegressionCandidate(reg_param=0.01)]
    return train_classifier(blobs.where("split = 'Training'"), candidates, validation_fraction=0.25, seed=3)


def test_top_labels_rank_by_probability_and_keep_label_order_on_ties(spark):
    rows = [([0.2, 0.5, 0.3, 0.0],), ([0.4, 0.1, 0.4, 0.1],), ([0.25, 0.25, 0.25, 0.25],)]
    df = spark.createDataFrame(rows, "p array<double>").coalesce(1)
    top3 = [r.top for r in df.select(top_labels(F.col("p"), FRUITS).alias("top")).collect()]
    assert top3 == [["Banana", "Kiwi", "Apple"], ["Apple", "Kiwi", "Banana"], ["Apple", "Banana", "Kiwi"]]
    two = df.limit(1).select(top_labels(F.slice("p", 1, 2), FRUITS[:2]).alias("top")).head().top
    assert two == ["Banana", "Apple"]  # k is cut to the number of labels


def test_predict_frame_adds_prediction_probabilities_and_top3(blobs, trained_blobs):
    predictions = predict_frame(blobs.where("split = 'Test'"), trained_blobs)
    assert predictions.columns == ["path", "label", "split", "features", "prediction", "probability", "top3"]
    rows = predictions.collect()
    assert len(rows) == 40 and all(row.prediction == row.label for row in rows)
    for row in rows:
        assert sum(row.probability) == pytest.approx(1.0)  # the probability vector, not the raw scores
        ranked = sorted(FRUITS, key=lambda label: -row.probability[FRUITS.index(label)])
        assert list(row.top3) == ranked[:3]
    metrics = evaluate(predictions, trained_blobs.labels)
    assert metrics["rows"] == 40 and metrics["top1_accuracy"] == 1.0 and metrics["macro_f1"] == 1.0


def test_summary_names_the_chosen_candidate_and_every_score():
    lr, mlp = LogisticRegressionCandidate(reg_param=0.1), MLPCandidate(hidden_layers=(8,), max_iter=50)
    scores = (CandidateScore(lr, 0.75, 0.6, 6, 2, 0.5), CandidateScore(mlp, 1.0, 0.1, 6, 2, 1.5))
    trained = TrainedClassifier(("Kiwi", "Lime"), mlp, None, None, scores, 3, 8, 7, 0.25)
    summary = trained.summary()
    assert summary["chosen"] == "mlp(hidden=[8])"
    assert summary["chosen_candidate"] == {"family": "mlp", "hidden_layers": [8], "max_iter": 50}
    assert summary["selection"] == SELECTION_RULE
    assert summary["candidates"][0] == {
        "name": "logistic_regression(reg=0.1, l1_ratio=0)",
        "candidate": {"family": "logistic_regression", "reg_param": 0.1, "elastic_net_param": 0.0, "max_iter": 100},
        "validation_accuracy": 0.75, "validation_log_loss": 0.6, "fit_rows": 6, "validation_rows": 2, "seconds": 0.5,
    }
    assert (summary["labels"], summary["input_dim"], summary["training_rows"]) == (["Kiwi", "Lime"], 3, 8)
    assert (summary["seed"], summary["validation_fraction"]) == (7, 0.25)


@pytest.mark.parametrize(
    "candidate",
    [LogisticRegressionCandidate(reg_param=0.01), MLPCandidate(hidden_layers=(4,))],
    ids=["lr", "mlp"],
)
def test_saved_classifier_loads_and_predicts_the_same(spark, blobs, candidate, tmp_path):
    training = blobs.where("split = 'Training'")
    trained = train_classifier(training, [candidate], validation_fraction=0.2)
    save_classifier(spark, trained, f"file://{tmp_path}/classifier")
    assert sorted(p.name for p in (tmp_path / "classifier").iterdir()) == (
        ["classifier.json", "model"] if trained.scaler is None else ["classifier.json", "model", "scaler"]
    )
    loaded = load_classifier(spark, f"file://{tmp_path}/classifier")
    assert loaded.labels == FRUITS and loaded.candidate == candidate
    assert loaded.scores == trained.scores and (loaded.scaler is None) == (trained.scaler is None)
    assert (loaded.input_dim, loaded.training_rows, loaded.seed) == (6, 120, 0)
    assert_df_equality(
        predict_frame(blobs, loaded).select("path", "prediction", "top3"),
        predict_frame(blobs, trained).select("path", "prediction", "top3"),
        ignore_row_order=True,
    )
