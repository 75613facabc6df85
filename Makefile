# Everything a fresh machine needs: a venv with the pinned CPU torch, the package, and (when apt
# is usable) the Debian packages for Fashion-MNIST and for a local test Slurm (slurm-wlm, munge).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check

# The recommended recipe (no --prune_method: allr-2) to 20% remaining, its ticket, then whether
# the ticket beats a random mask and a fresh initialisation (incop ablate)
DEMO_FLAGS := --net_arch lenet300 --net_warmup 3 --prune_target_remaining 20 --ticket_epochs 2 \
              --output_dir output/demo

SLURM_DIR := .slurm

.PHONY: install data slurm slurm-up slurm-down demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml src/incop/base/version.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test,export,tensorboard,wandb]'
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

# Installs slurm-wlm and munge when missing and apt is usable; without them the Slurm tests are
# skipped (with the reason shown), never failed.
slurm:
	@if [ ! -x /usr/sbin/slurmctld ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing the Debian packages slurm-wlm and munge (for the Slurm launcher's tests)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1 && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1; } || \
	  echo "could not install slurm-wlm and munge; the Slurm tests will be skipped"; \
	fi

# A single-node Slurm on this machine (state, logs and sockets in $(SLURM_DIR)); then
# export SLURM_CONF=$(CURDIR)/$(SLURM_DIR)/slurm.conf and use: incop sweep ... --launcher slurm
slurm-up: slurm
	$(PYTHON) scripts/slurm_cluster.py up --dir $(SLURM_DIR)

slurm-down:
	$(PYTHON) scripts/slurm_cluster.py down --dir $(SLURM_DIR)

demo: install data
	@if [ -f $(FMNIST) ]; then \
	  $(BIN)/incop run --net_dataset FashionMNIST $(DEMO_FLAGS); \
	else \
	  echo "NOTICE: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist); running the demo on scikit-learn's digits instead"; \
	  $(BIN)/incop run --net_dataset digits $(DEMO_FLAGS); \
	fi
	$(BIN)/incop ablate output/demo --quiet

test: install data slurm
	$(BIN)/python -m pytest

bench: install data
	$(BIN)/python benchmarks/epoch_overhead.py

clean:
	rm -rf $(VENV) output build src/*.egg-info $(SLURM_DIR)
