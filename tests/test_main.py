"""The demo and the README's quickstart run as written."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skinfluence.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def _table(out):
    rows = re.findall(r"^\s+(\d+)%\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$",
                      out, flags=re.M)
    return {int(r[0]): list(map(float, r[1:])) for r in rows}


def test_demo_finds_flipped_labels(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    table = _table(out)
    assert sorted(table) == [10, 20, 30]
    loss, self_inf, harm, chance = table[10]
    assert self_inf > 0.8 and loss > 0.8 and harm > 0.3 and chance < 0.3
    assert "for a linear model the training loss finds as many" in out
    for kind in ("helpful", "harmful"):
        assert len(re.findall(rf"^\s+{kind}\s+\d+", out, flags=re.M)) == 1


def test_help_prints_the_options_and_runs_nothing(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--dataset", "--flip", "--seed", "--model", "--plot", "-k"):
        assert flag in out
    assert "Fraction of flipped labels" not in out


@pytest.mark.parametrize("argv, why", [
    (["--flip", "1.5"], "must be in [0, 1)"),
    (["--dataset", "iris"], "invalid choice"),
    (["-k", "0"], "-k must be at least 1"),
    (["--test-row", "100000"], "--test-row must be in"),
])
def test_bad_flags_are_refused(capsys, argv, why):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert why in capsys.readouterr().err


def test_flags_choose_the_data_the_flips_and_the_row(capsys):
    main(["--dataset", "wine", "--flip", "0.2", "--seed", "3", "--test-row", "4",
          "-k", "2"])
    out = capsys.readouterr().out
    assert out.startswith("wine: LogisticRegression on 125 training rows, 25 of")
    assert "Test row #4" in out
    assert len(re.findall(r"^\s+(helpful|harmful)?\s+\d+\s+\d+\s+(yes|no)", out,
                          flags=re.M)) == 4
    main(["--dataset", "breast_cancer", "--flip", "0"])
    out = capsys.readouterr().out
    assert "0 of their labels flipped" in out
    assert "Fraction of flipped labels" not in out  # nothing to find


def test_plot_writes_the_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "top.png"
    main(["--dataset", "digits", "--plot", str(path)])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Figure written to {path}" in capsys.readouterr().out


def test_mlp_model(capsys):
    pytest.importorskip("torch")
    main(["--dataset", "wine", "--model", "mlp", "--flip", "0.1"])
    out = capsys.readouterr().out
    assert out.startswith("wine: MLPClassifier")
    assert sorted(_table(out)) == [10, 20, 30]


def test_demo_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "skinfluence"], capture_output=True,
                          text=True, timeout=120, check=True)
    assert "Fraction of flipped labels found" in done.stdout
    done = subprocess.run([sys.executable, "-m", "skinfluence", "--help"],
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.startswith("usage: python -m skinfluence")


def test_readme_quickstart_runs():
    text = (ROOT / "README.rst").read_text()
    block = re.search(r".. code-block:: python\n\n((?:    .*\n|\n)+)", text).group(1)
    code = "\n".join(line[4:] for line in block.splitlines())
    namespace = {}
    exec(compile(code, "README.rst", "exec"), namespace)
    assert namespace["I"].shape == (69, 500)
    assert namespace["rows"].shape == (69, 5)
    assert np.all(namespace["values"] <= 0)
    assert len(namespace["suspects"]) == 10
