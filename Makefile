# One-command set-up: `make demo` and `make test` create .venv and install what they need:
# every extra (`.[all]`: images, networks, xgboost, tissue), plus the test oracles for `make test`.
# Table users need only the core: `pip install baselens` (README "Install").
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
OUT    ?= runs/demo

.PHONY: demo test install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[all]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[all,test]"
	# efaar-benchmarking is a test oracle only; its declared dependencies (torch, scvi-tools,
	# geomloss, ...) are not needed by the function we compare against, so skip them.
	$(BIN)/python -m pip install -q --no-deps "efaar-benchmarking==1.0"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/baselens demo --out $(OUT)

test: install-test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
