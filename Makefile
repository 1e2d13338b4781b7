# Two entry points a newcomer needs: `make demo` and `make test`.
# Each creates .venv if missing and installs the package with the extras it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test bench lint docs notebooks clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[demo]"
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[test,integration]"
	touch $@

demo: $(VENV)/.demo-installed
	$(PY) examples/iris.py

test: $(VENV)/.test-installed
	$(PY) -m pytest -q

# Rebuild every notebook from notebooks/src/, execute it and store its outputs; figures
# marked in the sources go to docs/figures/. The tests fail when a notebook is stale.
$(VENV)/.notebooks-installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[notebooks]"
	touch $@

notebooks: $(VENV)/.notebooks-installed
	$(PY) notebooks/build.py

# Benchmarks (not part of make test): ours vs Optax vs torch.optim, side by side.
# BENCH_ARGS narrows the run, e.g. BENCH_ARGS="--trees 1,200,1000 --sizes 3.2M".
$(VENV)/.bench-installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[bench]"
	touch $@

bench: $(VENV)/.bench-installed
	$(PY) benchmarks/bench.py $(BENCH_ARGS)
	$(PY) benchmarks/fullbatch.py
	$(PY) benchmarks/compile.py --leaves 1000
	$(PY) benchmarks/flat_layout.py --trees 200,1000
	$(PY) benchmarks/new_optimizers.py

# Lint: ruff (rules and formatting) and mypy (types; settings in pyproject.toml).
$(VENV)/.lint-installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[lint]"
	touch $@

lint: $(VENV)/.lint-installed
	$(PY) -m ruff check gradxform tests notebooks benchmarks examples
	$(PY) -m ruff format --check gradxform tests benchmarks examples
	$(PY) -m mypy

# API reference from the docstrings (mkdocs.yml, docs/): MkDocs + mkdocstrings into site/.
# --strict: any warning (a malformed Args: section, a broken link) fails the build.
$(VENV)/.docs-installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed
	$(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info site
