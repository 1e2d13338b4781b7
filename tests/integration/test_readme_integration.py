"""The README's framework examples run: the ```py blocks of "Checkpointing" and
"Integrations" (they need the `integration` extra, so tests/test_readme.py, which runs the
```python blocks, leaves them to this file). Each block is self-contained and runs in a
fresh namespace; a block skips when a framework it imports is not installed."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).parent.parent.parent / "README.md"
BLOCKS = re.findall(r"```py\n(.*?)```", README.read_text(), re.S)
FRAMEWORKS = ("flax", "orbax", "equinox", "optax")


def _needs(block: str) -> list[str]:
    return [f for f in FRAMEWORKS if re.search(rf"^(import|from) {f}\b", block, re.M)]


def test_there_are_framework_blocks():
    assert len(BLOCKS) >= 5
    assert {f for b in BLOCKS for f in _needs(b)} == set(FRAMEWORKS)


@pytest.mark.parametrize(
    "block", BLOCKS, ids=[f"{i}-{'+'.join(_needs(b))}" for i, b in enumerate(BLOCKS)]
)
def test_readme_framework_block_runs(block, tmp_path, monkeypatch):
    for name in _needs(block):
        pytest.importorskip(
            "orbax.checkpoint" if name == "orbax" else name,
            reason=f"{name} is in the 'integration' extra: pip install -e '.[integration]'",
        )
    monkeypatch.chdir(tmp_path)
    exec(compile(block, str(README), "exec"), {})
