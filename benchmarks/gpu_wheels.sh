#!/bin/bash
# The wheels benchmarks/gpu_suite.sh needs on a GPU machine (Python 3.12, no network), into .whl/ (git-ignored):
# what ../shared/scripts/gpu/prepare.sh fetches, plus scikit-learn (with joblib and threadpoolctl), which
# pytorch-grad-cam's package imports and the GPU machine lacks (without it the Score-CAM step skips grad-cam).
# ultralytics is left out: its training imports polars, whose 54 MB wheel does not fit the 64 MiB that travels
# with the project, so the smoke skips detector-unet there.
# Usage (project root of a main checkout, where .git is a folder, with network; about a minute, ~35 MB):
#   bash benchmarks/gpu_wheels.sh [PATH/TO/prepare.sh]
set -eu
bash "${1:-../shared/scripts/gpu/prepare.sh}"
py=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
ver() { "$py" -m pip show "$1" 2>/dev/null | awk '/^Version:/{print "=="$2}'; }
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl "scikit-learn$(ver scikit-learn)" "joblib$(ver joblib)" \
  "threadpoolctl$(ver threadpoolctl)" 2>&1 | grep -v '^WARNING: Location' || true
du -sh .whl
