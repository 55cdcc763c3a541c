import json

import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality

from fruitfeat import pipeline
from fruitfeat.cli import run_main
from fruitfeat.io.listing import InputError
from fruitfeat.pipeline import run_pipeline
from fruitfeat.reduce.pca import project_features

from .conftest import job_config
from .feature_frames import exploded_features


@pytest.fixture(scope="module")
def first_run(spark, sample_dataset, tmp_path_factory):
    output = tmp_path_factory.mktemp("out")
    config = job_config(sample_dataset.root, output, output={"path": str(output), "keep_raw_features": True})
    return config, output, run_pipeline(config, spark)


def test_run_publishes_one_row_per_image_with_k_features(spark, sample_dataset, first_run):
    config, output, result = first_run
    features = spark.read.parquet(result.features_path)
    assert features.columns == ["path", "label", "split", "features"]
    expected = spark.createDataFrame(
        [(f"file:{path}", path.parent.name, path.parent.parent.name) for path in sample_dataset.files],
        "path string, label string, split string",
    )
    assert_df_equality(features.drop("features"), expected, ignore_row_order=True, ignore_nullable=True)
    lengths = {len(r.features) for r in features.select("features").collect()}
    assert lengths == {config.pca.k}
    assert spark.read.parquet(f"{result.run_path}/errors").count() == 0

    latest = json.loads((output / "_LATEST").read_text())
    assert latest["run_id"] == result.run_id and latest["features"] == result.features_path


def test_manifest_records_what_ran(first_run):
    config, output, result = first_run
    manifest = json.loads((output / "runs" / result.run_id / "manifest.json").read_text())
    assert manifest["counts"] == {"listed": 18, "featurized": 18, "quarantined": 0}
    variance = manifest["pca"]["explained_variance"]
    assert len(variance) == config.pca.k and variance == sorted(variance, reverse=True)
    assert 0 < manifest["pca"]["explained_variance_total"] <= 1
    assert manifest["weights"]["source"] == "random" and len(manifest["weights"]["broadcast_sha256"]) == 64
    assert set(manifest["stage_seconds"]) == {"session", "list", "weights", "featurize", "pca_fit", "write"}
    assert manifest["config"]["pca"]["k"] == config.pca.k
    assert manifest["versions"]["pyspark"].startswith("3.5.")
    # At most one build per Python worker; 0 when earlier tests left warm workers with this model.
    assert len(manifest["model_builds"]) <= 2



def test_pca_model_is_kept(spark, first_run):
    from pyspark.ml.feature import PCAModel

    _, _, result = first_run
    model = PCAModel.load(f"{result.run_path}/pca_model")
    assert model.getK() == 4 and model.pc.numRows == 1280
    # The published features are the saved model applied (by Spark ML here) to the kept 1280-d features.
    raw = spark.read.parquet(f"{result.run_path}/raw_features").where("error_reason is null").select("path", "features")
    expected = raw.transform(lambda df: project_features(df, model))
    published = spark.read.parquet(result.features_path).select("path", "features")
    scale = max(abs(v) for r in published.collect() for v in r.features)
    assert_approx_df_equality(
        exploded_features(published, scale), exploded_features(expected, scale), precision=1e-6,
        ignore_row_order=True, ignore_nullable=True,
    )


def test_same_config_gives_identical_features(spark, sample_dataset, first_run, tmp_path):
    config, _, result = first_run
    again = run_pipeline(job_config(sample_dataset.root, tmp_path), spark)
    a = {r.path: np.array(r.features) for r in spark.read.parquet(result.features_path).collect()}
    b = {r.path: np.array(r.features) for r in spark.read.parquet(again.features_path).collect()}
    assert a.keys() == b.keys()
    scale = max(np.abs(v).max() for v in a.values())
    assert all(np.allclose(a[p] / scale, b[p] / scale, atol=1e-5) for p in a)


def test_a_failed_run_leaves_the_published_run_untouched(spark, sample_dataset, tmp_path, monkeypatch):
    config = job_config(sample_dataset.root, tmp_path)
    good = run_pipeline(config, spark)
    before = (tmp_path / "_LATEST").read_text()
    files_before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "runs" / good.run_id).rglob("*"))

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline, "write_pca_model", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        run_pipeline(config, spark)
    assert (tmp_path / "_LATEST").read_text() == before
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "runs" / good.run_id).rglob("*")) == files_before
    incomplete = [p for p in (tmp_path / "runs").iterdir() if not (p / "_RUN_COMPLETE").exists()]
    assert len(incomplete) == 1  # the failed run stays visible as incomplete, never published


def test_empty_input_fails_before_any_work(spark, tmp_path):
    (tmp_path / "in" / "Training" / "Kiwi").mkdir(parents=True)
    (tmp_path / "in" / "Training" / "Kiwi" / "readme.txt").write_text("no images")
    with pytest.raises(InputError, match="no images .* under"):
        run_pipeline(job_config(tmp_path / "in", tmp_path / "out"), spark)
    assert not (tmp_path / "out" / "_LATEST").exists()


def test_cli_rejects_a_bad_config_before_spark(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("input: {path: in}\noutput: {path: out}\npca: {k: 0}\n")
    assert run_main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "pca.k" in err and "between 1 and 1280, got 0" in err


def test_explained_variance_matches_numpy_on_the_1280_features(spark, first_run):
    """Guards the PCA fit itself: Spark ML's breeze SVD was seen to return a wrong spectrum here."""
    config, _, result = first_run
    raw = spark.read.parquet(f"{result.run_path}/raw_features").where("error_reason is null")
    assert dict(raw.dtypes)["features"] == "array<float>"  # kept for people: unpacked from the staging form
    x = np.array([r.features for r in raw.select("features").collect()], dtype=np.float64)
    assert x.shape == (18, 1280)
    eigenvalues = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    expected = np.abs(eigenvalues) / np.abs(eigenvalues).sum()
    np.testing.assert_allclose(result.manifest["pca"]["explained_variance"], expected[: config.pca.k], rtol=1e-6)
    np.testing.assert_allclose(result.manifest["pca"]["spectrum"][:10], expected[:10], rtol=1e-6)


def test_raw_features_are_deleted_unless_kept(spark, sample_dataset, tmp_path):
    result = run_pipeline(job_config(sample_dataset.root, tmp_path), spark)
    assert not (tmp_path / "runs" / result.run_id / "raw_features").exists()
    assert not (tmp_path / "runs" / result.run_id / "_staged_features").exists()
    assert (tmp_path / "runs" / result.run_id / "features").exists()


def test_recognition_outputs_and_variance_target_k(spark, sample_dataset, tmp_path):
    from fruitfeat.reduce.pca_selection import choose_k

    config = job_config(
        sample_dataset.root, tmp_path, pca={"k": 0.9}, classifier={"enabled": True, "validation_fraction": 0.25}
    )
    result = run_pipeline(config, spark)
    run = tmp_path / "runs" / result.run_id
    manifest = json.loads((run / "manifest.json").read_text())
    pca = manifest["pca"]
    assert pca["variance_target"] == 0.9 and pca["k"] == choose_k(pca["spectrum"], 0.9)
    assert len(pca["explained_variance"]) == pca["k"] and sum(pca["explained_variance"]) >= 0.9 - 1e-9
    assert {len(r.features) for r in spark.read.parquet(result.features_path).collect()} == {pca["k"]}

    recognition = manifest["recognition"]
    assert recognition["test"]["rows"] == 6 and 0 <= recognition["test"]["top1_accuracy"] <= 1
    assert recognition["classifier"]["classes"] == 3 and len(recognition["classifier"]["candidates"]) == 4
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["test"]["confusion_matrix"]) == 3
    for name in ("explained_variance", "pca_scatter", "confusion_matrix"):
        png = (run / "plots" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert (run / "predictor.npz").stat().st_size > 0
    assert "data:image/png;base64," in (run / "report.html").read_text()
    assert manifest["outputs"]["report"] == f"{result.run_path}/report.html"
    assert json.loads((tmp_path / "_LATEST").read_text())["top1_accuracy"] == recognition["test"]["top1_accuracy"]


def test_spark_ml_pca_runs_on_the_packed_staging_table(spark, sample_dataset, tmp_path):
    """pca.method=spark_ml unpacks the staged rows for Spark ML; the projection of packed rows uses its model."""
    from pyspark.ml.feature import PCAModel

    config = job_config(sample_dataset.root, tmp_path, pca={"k": 3, "method": "spark_ml"})
    result = run_pipeline(config, spark)
    assert result.manifest["pca"]["method"] == "spark_ml"
    variance = result.manifest["pca"]["explained_variance"]
    assert len(variance) == 3 and variance == sorted(variance, reverse=True) and 0 < sum(variance) <= 1
    model = PCAModel.load(f"{result.run_path}/pca_model")
    features = spark.read.parquet(result.features_path)
    assert features.count() == len(sample_dataset.files)
    assert {len(r.features) for r in features.collect()} == {3} and model.pc.numCols == 3
