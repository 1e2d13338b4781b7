"""Build the notebooks from their sources, execute them and store their outputs.

Each notebook's source of truth is ``notebooks/src/NN_name.py`` in the "percent" format:
a line ``# %% [markdown]`` starts a markdown cell (its lines are comments, ``# `` is
stripped), a line ``# %%`` starts a code cell. This script writes
``notebooks/NN_name.ipynb``, executes it with a Jupyter kernel (nbclient) so that the
stored notebook shows its outputs (plots included) on a code-hosting site, and saves the
figures a code cell names with a first line ``# figure: NAME`` to ``docs/figures/NAME.png``.

    python notebooks/build.py                 # every notebook (``make notebooks``)
    python notebooks/build.py 01_optimizer_zoo

``tests/test_notebooks.py`` checks that each stored notebook matches its source and that
re-executing it reproduces its printed numbers, so a stale notebook fails the tests.
"""

from __future__ import annotations

import argparse
import base64
import pathlib
import re
import sys
import time

import nbformat
from nbclient import NotebookClient

HERE = pathlib.Path(__file__).resolve().parent
SRC = HERE / "src"
FIGURES = HERE.parent / "docs" / "figures"
TIMEOUT_S = 300  # per cell


def parse(source: str) -> list[tuple[str, str]]:
    """(cell type, text) pairs of a percent-format source."""
    cells: list[tuple[str, list[str]]] = []
    for line in source.splitlines():
        if line.startswith("# %%"):
            kind = "markdown" if "[markdown]" in line else "code"
            cells.append((kind, []))
        elif cells:
            cells[-1][1].append(line)
        elif line.strip():
            raise ValueError("text before the first '# %%' cell marker")
    out = []
    for kind, lines in cells:
        if kind == "markdown":
            lines = [re.sub(r"^# ?", "", x) for x in lines]
        text = "\n".join(lines).strip("\n")
        if text:
            out.append((kind, text))
    return out


def notebook_from_source(path: pathlib.Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for kind, text in parse(path.read_text()):
        new = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(new(text))
    # Stable cell ids keep the stored files' diffs small.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{path.stem}-{i}"
    return nb


def execute(nb: nbformat.NotebookNode, cwd: pathlib.Path) -> nbformat.NotebookNode:
    client = NotebookClient(
        nb,
        timeout=TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
        record_timing=False,
    )
    client.execute()
    return nb


def figure_names(nb: nbformat.NotebookNode) -> dict[str, bytes]:
    """PNG bytes of the first image of each code cell marked ``# figure: NAME``."""
    out = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        m = re.match(r"# figure: ([\w-]+)", cell.source)
        if not m:
            continue
        for o in cell.get("outputs", []):
            png = o.get("data", {}).get("image/png")
            if png:
                out[m.group(1)] = base64.b64decode(png)
                break
    return out


def build(name: str) -> float:
    src = SRC / f"{name}.py"
    nb = notebook_from_source(src)
    start = time.perf_counter()
    execute(nb, HERE)
    seconds = time.perf_counter() - start
    nbformat.write(nb, HERE / f"{name}.ipynb")
    FIGURES.mkdir(parents=True, exist_ok=True)
    for fig, png in figure_names(nb).items():
        (FIGURES / f"{fig}.png").write_bytes(png)
    return seconds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="notebook names (default: all in src/)")
    args = ap.parse_args(argv)
    names = args.names or sorted(p.stem for p in SRC.glob("*.py"))
    for name in names:
        seconds = build(name)
        print(f"{name}: executed in {seconds:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
