"""Every notebook in notebooks/ runs top to bottom (code cells in one namespace).

Executed without a Jupyter kernel so the test needs no extra dependency; `make lint`
lints the notebooks with ruff.
"""

import json
import pathlib

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, capsys):
    nb = json.loads(path.read_text())
    ns: dict = {}
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}[cell {i}]", "exec"), ns)
    out = capsys.readouterr().out
    assert "Traceback" not in out and out.strip()
