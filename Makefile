# Everything a fresh machine needs: a venv with the pinned CPU torch, the package, and (when apt
# is usable) the Debian Fashion-MNIST package.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check

DEMO_FLAGS := --net_arch lenet300 --prune_method ciap --net_warmup 3 --net_train_epochs 5 \
              --exper_imp_total_iter 4 --output_dir output/demo

.PHONY: install data demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	touch $(STAMP)

# Installs dataset-fashion-mnist when it is missing and apt is usable; never fails the build.
data:
	@if [ ! -f $(FMNIST) ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing the Debian package dataset-fashion-mnist"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1 && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; } || \
	  echo "could not install dataset-fashion-mnist"; \
	fi

demo: install data
	@if [ -f $(FMNIST) ]; then \
	  $(BIN)/incop run --net_dataset FashionMNIST $(DEMO_FLAGS); \
	else \
	  echo "NOTICE: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist); running the demo on scikit-learn's digits instead"; \
	  $(BIN)/incop run --net_dataset digits $(DEMO_FLAGS); \
	fi

test: install data
	$(BIN)/python -m pytest

bench: install data
	$(BIN)/python benchmarks/epoch_overhead.py

clean:
	rm -rf $(VENV) output build src/*.egg-info
