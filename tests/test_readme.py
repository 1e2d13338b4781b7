"""The README's examples run and print what it says."""

import doctest
import pathlib
import re

import jax
import jax.numpy as jnp
import pytest

import gradxform as gx

README = pathlib.Path(__file__).parent.parent / "README.md"


def test_readme_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert lines[0] == "```bash"
    assert lines[1].startswith("make demo") and lines[2].startswith("make test")
    assert lines[3] == "```"


def test_readme_doctests():
    result = doctest.testfile(
        str(README),
        module_relative=False,
        globs={"gx": gx, "jax": jax, "jnp": jnp},
        optionflags=doctest.NORMALIZE_WHITESPACE,
    )
    assert result.attempted > 0 and result.failed == 0


BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_python_block_runs_alone(i, tmp_path, monkeypatch):
    # Each block is self-contained (its own imports): pasted alone, it runs.
    monkeypatch.chdir(tmp_path)  # the logging example writes train.jsonl
    ns: dict = {}
    exec(compile(BLOCKS[i], f"{README}[python block {i}]", "exec"), ns)
    if "step" in ns and "params" in ns and i == 0:
        # The quick start defines a jitted step: run it once.
        x = jnp.ones((5, 4))
        y = jnp.zeros(5, jnp.int32)
        params, _ = ns["step"](ns["params"], ns["state"], x, y)
        assert params["w"].shape == (4, 3)
    if "JsonlLogger" in BLOCKS[i]:
        assert (tmp_path / "train.jsonl").exists()
