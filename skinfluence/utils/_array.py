"""Arrays of either family: NumPy for GLMs, torch tensors for torch models.

The solvers and the scoring module are written once against the array API
standard (``xp = namespace(a)``, the array-api-compat wrappers that
scikit-learn vendors), so a torch model's gradients, curvature products and
solves stay on its device and in its dtype; NumPy arrays go through the
same code. What the standard lacks (a Cholesky solve, the dtype's
precision) is here, once for both.
"""

import numpy as np

try:  # vendored by scikit-learn since 1.6
    from sklearn.externals.array_api_compat import array_namespace, is_torch_array
except ImportError:  # pragma: no cover - a scikit-learn that unbundles it
    from array_api_compat import array_namespace, is_torch_array


def namespace(*arrays):
    """The array namespace of ``arrays``: array-api-compat's numpy or torch."""
    return array_namespace(*arrays)


def is_torch(a):
    """Whether ``a`` is a torch tensor (without importing torch)."""
    return is_torch_array(a)


def to_numpy(a):
    """``a`` as a float64 NumPy array (a tensor leaves its device here)."""
    if is_torch_array(a):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def like(a, template):
    """``a`` (NumPy or torch) in ``template``'s library, device and dtype."""
    if is_torch_array(template):
        import torch

        return torch.as_tensor(np.asarray(a) if not is_torch_array(a) else a,
                               dtype=template.dtype, device=template.device)
    return np.asarray(to_numpy(a) if is_torch_array(a) else a, dtype=template.dtype)


def eps(a):
    """Machine epsilon of ``a``'s floating dtype."""
    if is_torch_array(a):
        import torch

        return torch.finfo(a.dtype).eps
    return np.finfo(np.asarray(a).dtype).eps


def cholesky(A):
    """Lower Cholesky factor of a torch SPD matrix, or None where it fails.

    NumPy matrices take LAPACK's tuned path in
    :mod:`skinfluence.solvers._direct` instead.
    """
    import torch

    L, info = torch.linalg.cholesky_ex(A)
    return None if int(info) else L


def cho_solve(L, B):
    """``(L Lᵀ)⁻¹ B`` from a lower torch Cholesky factor."""
    import torch

    return torch.cholesky_solve(B, L)
