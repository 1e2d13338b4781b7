"""The `make demo` job runs and its numbers make sense."""

import pytest

pytest.importorskip("sklearn")

from gradxform import demo  # noqa: E402


def test_demo_prints_the_iris_table(capsys):
    demo.main()
    out = capsys.readouterr().out.splitlines()
    rows = {line[:18].strip(): line[18:].split() for line in out[3:]}
    assert list(rows) == ["GD (full batch)", "SGD", "Momentum", "Adam"]
    for label, (loss, train_acc, test_acc, _) in rows.items():
        # Iris is nearly linearly separable: every optimizer should fit it well.
        assert float(loss) < 0.3, label
        assert float(train_acc) > 0.9 and float(test_acc) > 0.9, label
