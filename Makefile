# scEmbed dashboard: the two commands a new machine needs are `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501
export PYTHONPATH := $(CURDIR)
export PYTHONHASHSEED := 0

.PHONY: run test lint reference bench bench-peers bench-scale bench-atlas bench-sessions bench-workspace bench-cold clean venv

venv: $(STAMP)

# (Re)create the environment whenever a requirements file is newer than the last install.
$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	PYTHONPATH=$(CURDIR) $(PY) -m scembed_core.warm  # numba's disk cache, filled at install
	@touch $(STAMP)

run: $(STAMP)
	SCEMBED_HOSTED=0 SCEMBED_ALLOW_TRUST=1 $(VENV)/bin/streamlit run app.py --server.port $(PORT)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -n 2 --dist loadgroup -q tests

lint: $(STAMP)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

# Rebuild the built-in default reference and the demo query from ../shared/data (fixed seeds).
reference: $(STAMP)
	$(PY) scripts/build_default_reference.py

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

bench-peers: $(STAMP)
	$(PY) -m benchmarks.peers

bench-atlas: $(STAMP)
	$(PY) -m benchmarks.scale_dask

bench-sessions: $(STAMP)
	$(PY) -m benchmarks.sessions

bench-scale: $(STAMP)
	$(PY) -m benchmarks.scale

bench-workspace: $(STAMP)
	$(PY) -m benchmarks.workspace

bench-cold: $(STAMP)
	$(PY) -m benchmarks.cold

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
