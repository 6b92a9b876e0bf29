"""The demo and the README's quickstart run as written."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from skinfluence.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_finds_flipped_labels(capsys):
    main()
    out = capsys.readouterr().out
    table = re.search(r"10%\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", out)
    self_inf, loss, chance = map(float, table.groups())
    assert self_inf > 0.8 and self_inf >= loss and chance < 0.3
    assert out.count("helpful") == 1 and out.count("harmful") == 1


def test_demo_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "skinfluence"], capture_output=True,
                          text=True, timeout=120, check=True)
    assert "Fraction of flipped labels found" in done.stdout


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
