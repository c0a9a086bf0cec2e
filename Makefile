# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# TORCH_SPEC installs torch before the package so that pip never resolves the bare
# `torch>=2.3` requirement to a multi-GB CUDA build on CPU-only machines. On this
# project's machines torch==2.13.0 is a CPU wheel on local disk; elsewhere override it,
# e.g. `make test TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# The main job: compare the four families on the built-in synthetic data (about 6 minutes
# on 2 CPU cores after the install); the last line printed names the HTML report.
demo: $(STAMP)
	$(VENV)/bin/unetfamily compare --data synthetic --models fcn8s,unet,unet_plusplus,unet_3plus \
		--seeds 2 --epochs 8 --size 64 --batch-size 16 --lr 0.003 --out reports/demo

clean:
	rm -rf $(VENV) build dist src/*.egg-info
