"""Collection settings for the doctest run over the package."""

import importlib.util

# The torch family is an optional extra: without torch its modules are not
# collected (tests/test_optional.py checks that the core works without it).
collect_ignore = []
if importlib.util.find_spec("torch") is None:
    collect_ignore += [
        "skinfluence/models/_torch.py",
        "skinfluence/solvers/_ekfac.py",
    ]
