# Two entry points a newcomer needs: `make demo` and `make test`.
# Each creates .venv if missing and installs the package with the extras it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[demo]"
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.demo-installed
	$(PY) -m gradxform.demo

test: $(VENV)/.test-installed
	$(PY) -m pytest -q

lint: $(PY)
	$(PIP) install --quiet ruff
	$(PY) -m ruff check gradxform tests notebooks benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
