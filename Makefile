# Two commands on a fresh machine: `make serve` (the server on sample-data) and `make test`.
# Both set up what is missing first: a virtual environment in .venv with requirements.txt installed (and, for the
# tests, the Debian packages of scripts/system-packages).
PYTHON ?= python3
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install serve test sample-data

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	@touch $(STAMP)

install: $(STAMP)

# The monailabel launcher runs whatever `python` comes first on PATH: put the venv's first.
# pyliverlesionseg's networks are converted from its PyPI wheel the first time; without the index the server starts
# without that model (and says so in /info).
serve: $(STAMP)
	-$(BIN)/liver-tumor pyliverlesionseg-model --if-missing
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/monailabel start_server --app apps/liver_tumor --studies sample-data \
		--host $(HOST) --port $(PORT)

# Orthanc and Chromium (Debian) for the PACS and browser tests: installed when possible, else those tests skip
# Two pytest processes, each taking whole test files (module-scoped servers stay in one process)
test: $(STAMP)
	scripts/system-packages
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

sample-data: $(STAMP)
	$(BIN)/liver-tumor sample-data --out sample-data
