"""The notebooks are fresh and run: each stored notebook matches its source in
notebooks/src/, shows at least one figure, and re-executing it (a real Jupyter kernel,
as ``make notebooks`` does) prints the same numbers as its stored outputs."""

from __future__ import annotations

import copy
import importlib.util
import pathlib
import re

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("matplotlib")

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("notebook_build", ROOT / "notebooks" / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

SOURCES = sorted((ROOT / "notebooks" / "src").glob("*.py"))
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
# Re-executed numbers may differ in the last bits between CPUs (vectorized reductions);
# long optimization runs can amplify that, so printed numbers are compared at 1e-4.
RTOL, ATOL = 1e-4, 1e-9


def _stored(src: pathlib.Path):
    return nbformat.read(ROOT / "notebooks" / f"{src.stem}.ipynb", 4)


def _texts(nb) -> list[str]:
    """Per code cell: its printed text (streams and plain-text results)."""
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts = []
        for o in cell.get("outputs", []):
            if o.output_type == "stream" and o.name == "stdout":
                parts.append(o.text)
            elif o.output_type in ("execute_result", "display_data"):
                text = o.get("data", {}).get("text/plain", "")
                if "image/png" not in o.get("data", {}):
                    parts.append(text)
        out.append("".join(parts))
    return out


def test_there_are_notebooks_and_each_is_built():
    assert len(SOURCES) >= 7
    built = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert built == [p.stem for p in SOURCES], "run `make notebooks`"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_stored_notebook_matches_its_source_and_shows_figures(src):
    stored = _stored(src)
    expected = build.notebook_from_source(src)
    got = [(c.cell_type, c.source) for c in stored.cells]
    want = [(c.cell_type, c.source) for c in expected.cells]
    assert got == want, f"{src.name} changed since its notebook was built: run `make notebooks`"
    outputs = [o for c in stored.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no stored figure"
    assert all(c.get("execution_count") for c in stored.cells if c.cell_type == "code")


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_notebook_reexecutes_to_its_stored_numbers(src, monkeypatch):
    # The kernel inherits this process's environment: run it in the one `make notebooks`
    # uses, without conftest's forced host device count (it changes XLA's reductions).
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    stored = _stored(src)
    fresh = build.execute(copy.deepcopy(build.notebook_from_source(src)), ROOT / "notebooks")
    for i, (old, new) in enumerate(zip(_texts(stored), _texts(fresh))):
        where = f"{src.stem} code cell {i}"
        assert NUMBER.sub("#", old) == NUMBER.sub("#", new), f"{where}: text differs"
        a = [float(x) for x in NUMBER.findall(old)]
        b = [float(x) for x in NUMBER.findall(new)]
        assert b == pytest.approx(a, rel=RTOL, abs=ATOL), f"{where}: numbers differ"
