"""The core imports and works without the optional extras."""

import subprocess
import sys
import textwrap


def test_core_works_without_torch_and_matplotlib():
    code = textwrap.dedent("""
        import importlib.abc
        import sys

        class Missing(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in ("torch", "matplotlib"):
                    raise ImportError(f"No module named {name!r}")

        sys.meta_path.insert(0, Missing())
        import numpy as np
        from sklearn.datasets import load_breast_cancer
        from sklearn.linear_model import LogisticRegression
        import skinfluence, skinfluence.plotting, skinfluence.torch
        from skinfluence import InfluenceEstimator
        X, y = load_breast_cancer(return_X_y=True)
        X = (X - X.mean(0)) / X.std(0)
        inf = InfluenceEstimator(LogisticRegression()).fit(X[:300], y[:300])
        assert inf.score_influence(X[300:], y[300:]).shape == (269, 300)
        try:
            skinfluence.torch.TorchModel(object()).fit(X[:5], y[:5])
        except ImportError as exc:
            assert "skinfluence[torch]" in str(exc), exc
        else:
            raise AssertionError("TorchModel without torch must raise ImportError")
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
