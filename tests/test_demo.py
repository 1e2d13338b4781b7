"""The `make demo` job (examples/iris.py) runs and its numbers make sense."""

import importlib.util
import pathlib

import pytest

pytest.importorskip("sklearn")

DEMO = pathlib.Path(__file__).parent.parent / "examples" / "iris.py"


def test_demo_prints_the_iris_table(capsys):
    spec = importlib.util.spec_from_file_location("iris_demo", DEMO)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    demo.main()
    out = capsys.readouterr().out.splitlines()
    rows = {line[:18].strip(): line[18:].split() for line in out[3:]}
    assert list(rows) == ["GD (full batch)", "SGD", "Momentum", "Adam"]
    for label, (loss, train_acc, test_acc, _) in rows.items():
        # Iris is nearly linearly separable: every optimizer should fit it well.
        assert float(loss) < 0.3, label
        assert float(train_acc) > 0.9 and float(test_acc) > 0.9, label
