# `make demo` and `make test` each create .venv if missing and install what they need (idempotent:
# each install is skipped while pyproject.toml is unchanged).
# `make demo` installs the core package only (torch + torchvision as a pinned pair: the CUDA build is the
# only torch whose torchvision imports on these machines, ~5.5 GB); `make test` adds every extra the
# tests exercise, including the AGPL `yolo` extra (ultralytics, for detector-unet) and napari.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUM := $(shell cksum pyproject.toml | cut -d' ' -f1)
CORE_STAMP := $(VENV)/.core-$(SUM)
STAMP := $(VENV)/.installed-$(SUM)
export NO_ALBUMENTATIONS_UPDATE=1 HF_HUB_OFFLINE=1 YOLO_OFFLINE=1
DEMO := demo_out

.PHONY: demo demo-weak test test-floats lint install

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(CORE_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -e .
	rm -f $(VENV)/.core-*
	touch $(CORE_STAMP)

$(STAMP): pyproject.toml $(CORE_STAMP)
	$(BIN)/python -m pip install -q -e ".[dev,pretrained,yolo,scale,export,napari]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(CORE_STAMP)
	bash scripts/demo.sh $(DEMO)

# the same images and steps from image labels only (scorecam-unet), its IoU printed beside `make demo`'s
demo-weak: $(CORE_STAMP)
	METHOD=scorecam-unet COMPARE=$(DEMO) bash scripts/demo.sh $(DEMO)_weak

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 --durations=15

# The tests that compare floats with stored values or across code paths, again on PyTorch's portable
# kernels: results that hold only on this CPU's SIMD path fail here too (docs/hardening.md, "Floats across CPUs").
FLOAT_TESTS := tests/methods/test_model_compat.py tests/methods/clean tests/export tests/cam tests/test_tiling.py
test-floats: $(STAMP)
	ATEN_CPU_CAPABILITY=default $(BIN)/python -m pytest -n 2 $(FLOAT_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
