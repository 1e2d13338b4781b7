"""The README's examples run and print what it says."""

import doctest
import pathlib
import re

import jax
import jax.numpy as jnp

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


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    # The blocks read like one notebook: they share a namespace, in order.
    monkeypatch.chdir(tmp_path)  # the logging example writes train.jsonl
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 4
    ns = {}
    exec(compile(blocks[0], str(README), "exec"), ns)
    # The quick start defines a jitted step: run it once.
    x = jnp.ones((5, 4))
    y = jnp.zeros(5, jnp.int32)
    params, state = ns["step"](ns["params"], ns["state"], x, y)
    assert params["w"].shape == (4, 3)
    for block in blocks[1:]:
        exec(compile(block, str(README), "exec"), ns)
    assert (tmp_path / "train.jsonl").exists()
