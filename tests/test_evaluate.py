import pytest
from chispa import assert_df_equality

from fruitfeat.recognition.evaluate import evaluate, pair_counts

LABELS = ["A", "B", "C", "D"]  # D is a class of the classifier that never occurs in these rows

# true, prediction, top3: 9 rows, 6 right at top-1, 7 with the true label in the top 3.
ROWS = [
    ("A", "A", ["A", "B", "C"]),
    ("A", "A", ["A", "C", "B"]),
    ("A", "A", ["A", "D", "B"]),
    ("A", "B", ["B", "A", "C"]),  # wrong, but A is second
    ("B", "B", ["B", "A", "C"]),
    ("B", "B", ["B", "C", "A"]),
    ("B", "C", ["C", "D", "A"]),  # wrong, B not in top 3
    ("C", "C", ["C", "A", "B"]),
    ("C", "A", ["A", "B", "D"]),  # wrong, C not in top 3
]
SCHEMA = "path string, label string, prediction string, top3 array<string>"


@pytest.fixture(scope="module")
def predictions(spark):
    rows = [(f"img{i}", *row) for i, row in enumerate(ROWS)]
    rows.append(("unlabelled", None, "A", ["A", "B", "C"]))  # no ground truth: ignored
    return spark.createDataFrame(rows, SCHEMA)


def test_pair_counts_are_one_row_per_true_predicted_pair(spark, predictions):
    expected = spark.createDataFrame(
        [("A", "A", 3, 3), ("A", "B", 1, 1), ("B", "B", 2, 2), ("B", "C", 1, 0), ("C", "C", 1, 1), ("C", "A", 1, 0)],
        "label string, prediction string, count long, top_hits long",
    )
    assert_df_equality(pair_counts(predictions), expected, ignore_row_order=True, ignore_nullable=True)


def test_headline_metrics(predictions):
    metrics = evaluate(predictions, LABELS)
    assert metrics["rows"] == 9
    assert metrics["top1_accuracy"] == pytest.approx(6 / 9)
    assert metrics["top3_accuracy"] == pytest.approx(7 / 9)
    # F1 of A, B, C = 3/4, 2/3, 1/2; D neither occurs nor is predicted, so it is not averaged.
    assert metrics["macro_f1"] == pytest.approx((3 / 4 + 2 / 3 + 1 / 2) / 3)


def test_confusion_matrix_rows_true_columns_predicted_in_label_order(predictions):
    metrics = evaluate(predictions, LABELS)
    assert metrics["labels"] == LABELS and metrics["unknown_labels"] == []
    assert metrics["confusion_matrix"] == [
        [3, 1, 0, 0],
        [0, 2, 1, 0],
        [1, 0, 1, 0],
        [0, 0, 0, 0],
    ]


def test_per_class_precision_recall_f1_support(predictions):
    per_class = {m["label"]: m for m in evaluate(predictions, LABELS)["per_class"]}
    expected = {  # label: (precision, recall, f1, support)
        "A": (3 / 4, 3 / 4, 3 / 4, 4),
        "B": (2 / 3, 2 / 3, 2 / 3, 3),
        "C": (1 / 2, 1 / 2, 1 / 2, 2),
        "D": (0.0, 0.0, 0.0, 0),
    }
    for label, (precision, recall, f1, support) in expected.items():
        m = per_class[label]
        assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((precision, recall, f1)), label
        assert m["support"] == support


def test_precision_and_recall_differ_when_errors_are_one_sided(spark):
    rows = [("A", "A", ["A"]), ("A", "A", ["A"]), ("B", "A", ["A"]), ("B", "B", ["B"])]
    metrics = evaluate(spark.createDataFrame([(f"i{i}", *r) for i, r in enumerate(rows)], SCHEMA), ["A", "B"])
    a, b = metrics["per_class"]
    assert (a["precision"], a["recall"]) == pytest.approx((2 / 3, 1.0))
    assert (b["precision"], b["recall"]) == pytest.approx((1.0, 1 / 2))
    assert a["f1"] == pytest.approx(0.8) and b["f1"] == pytest.approx(2 / 3)
    assert metrics["confusion_matrix"] == [[2, 0], [1, 1]]


def test_a_true_label_the_classifier_never_saw_is_appended(spark):
    rows = [("A", "A", ["A", "B"]), ("Kiwi", "B", ["B", "A"])]
    metrics = evaluate(spark.createDataFrame([(f"i{i}", *r) for i, r in enumerate(rows)], SCHEMA), ["A", "B"])
    assert metrics["labels"] == ["A", "B", "Kiwi"] and metrics["unknown_labels"] == ["Kiwi"]
    assert metrics["confusion_matrix"] == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]
    assert metrics["top1_accuracy"] == pytest.approx(0.5)


def test_empty_predictions_give_zeros(spark):
    metrics = evaluate(spark.createDataFrame([], SCHEMA), ["A", "B"])
    assert metrics["rows"] == 0 and metrics["top1_accuracy"] == 0.0 and metrics["macro_f1"] == 0.0
    assert metrics["confusion_matrix"] == [[0, 0], [0, 0]]
