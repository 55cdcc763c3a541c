"""spark-submit entry point: ``spark-submit jobs/run_pipeline.py --config conf/local.yaml [--set k=v ...]``.

Only argument handling lives here; the job itself is the ``fruitfeat`` package (installed in the
Python environment of the driver and executors).
"""

import sys

from fruitfeat.cli import run_main

if __name__ == "__main__":
    sys.exit(run_main(sys.argv[1:]))
