"""How ``method="auto"`` (and the form of ``"direct"``) is chosen: by cost.

Three ways to apply ``H⁻¹`` to a GLM, with what each holds and costs:

- primal direct: the dense (K p)² Hessian and its Cholesky factor,
  ``8 (K p)² x 2`` bytes (a third copy for the inverse that
  ``estimate="newton"`` needs); the Hessian costs ``n p²`` flops a diagonal
  block (``Σ_j nnz_j²`` on sparse data) and twice that an off-diagonal one,
  the factorisation ``(K p)³ / 3`` and Newton's inverse ``2 (K p)³ / 3``.
- dual direct (:class:`~skinfluence.solvers._dual.DualSolver`): the
  (n K)² kernel and its factor, ``16 (n K)²`` bytes; the kernel costs
  ``n² p`` (``Σ_f nnz_f²`` on sparse data) and the factorisation
  ``(n K)³ / 3``.  Only where every output carries the same penalty.
- cg: no matrix; each iteration is one Hessian product per right-hand side,
  ``4 nnz(Z) K`` flops.  Its cost is unknown before the solve, so it is
  estimated as ``CG_ITERATIONS`` iterations for ``CG_RIGHT_HAND_SIDES``
  right-hand sides (a typical call; ``self_influence`` has far more), plus
  ``n K`` more for ``estimate="newton"``'s leverage blocks.

``"auto"`` takes the cheaper direct form among those that fit in
:func:`memory_budget`, provided it is cheaper than the cg estimate, and cg
otherwise.  ``"direct"`` takes the cheaper form that fits (the smaller one
if neither does).
"""

import os

import numpy as np
import scipy.sparse as sp

#: Iterations and right-hand sides the cg estimate assumes.
CG_ITERATIONS = 100
CG_RIGHT_HAND_SIDES = 100

#: Largest parameter count that "auto" factorises for models known only by
#: their Hessian products (torch): forming H takes one product per parameter.
DIRECT_MAX_PARAMS = 5000


def memory_budget():
    """Bytes a direct factorisation may hold: half the memory available now.

    Read from ``/proc/meminfo`` (MemAvailable) where it exists, else from the
    physical memory size; 8 GiB where neither can be read.
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return 0.5 * int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return 0.5 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8.0 * 2**30


def _gib(nbytes):
    return f"{nbytes / 2**30:.3g} GiB"


def _primal_cost(gram, newton):
    Z, D = gram.Z, gram.D
    n, p = Z.shape
    K = gram.n_outputs
    if sp.issparse(Z):
        row_nnz = np.diff(Z.tocsr().indptr).astype(np.float64)
        block = float(row_nnz @ row_nnz)
    else:
        block = float(n) * p * p
    # A diagonal block is one syrk (n p² multiply-adds, the triangle), an
    # off-diagonal one a GEMM (twice that); blocks that are identically zero
    # (one-vs-rest outputs) are skipped.
    off = sum(1 for k in range(K) for m in range(k + 1, K) if np.any(D[:, k, m]))
    flops = (K + 2 * off) * block
    q = K * p
    flops += q**3 / 3.0 + (2 * q**3 / 3.0 if newton else 0.0)
    return flops, 8.0 * q * q * (3 if newton else 2)


def _cg_cost(gram, newton=False):
    """The cg estimate: ``CG_ITERATIONS`` products for each right-hand side.

    ``estimate="newton"`` adds the leverage blocks ``A_jj``: K solves per
    training row (``_newton.diag_blocks``), which a factorisation gives from
    its inverse instead.
    """
    Z = gram.Z
    nnz = Z.nnz if sp.issparse(Z) else Z.size
    rhs = CG_RIGHT_HAND_SIDES + (Z.shape[0] * gram.n_outputs if newton else 0)
    return float(CG_ITERATIONS * rhs * 4 * nnz * gram.n_outputs)


def choose(method, n_params, gram=None, *, damping=0.0, null_space=None,
           newton=False, form=None):
    """The solver for ``method`` on a Hessian of ``n_params``, and why.

    ``gram`` is the GLM's :class:`~skinfluence.solvers.GramStructure` (None
    for models known only by Hessian products). ``form`` ("primal" or
    "dual") fixes the direct solver's form.

    Returns ``(method, form, record)``: the resolved method name, ``"primal"``
    or ``"dual"`` for direct (None otherwise), and the figures behind the
    choice, which go into ``solver_info_["choice"]``.
    """
    if method not in ("auto", "direct"):
        return method, None, {"requested": method}
    if gram is None:  # torch: forming H costs one product per parameter
        if method == "auto":
            method = "direct" if n_params <= DIRECT_MAX_PARAMS else "cg"
        reason = (f"{n_params} parameters {'<=' if method == 'direct' else '>'}"
                  f" {DIRECT_MAX_PARAMS}, the most that 'auto' forms densely from "
                  "Hessian products")
        return method, ("primal" if method == "direct" else None), {
            "requested": "auto", "reason": reason}
    budget = memory_budget()
    forms = {"primal": _primal_cost(gram, newton)}
    if gram.split(damping, null_space) is not None:
        forms["dual"] = gram.dual_cost()
    if form is not None:
        if form not in ("primal", "dual"):
            raise ValueError(
                f"solver_params['form'] must be 'primal' or 'dual'; got {form!r}.")
        if form not in forms:
            raise ValueError(
                f"form={form!r} does not apply here: the dual form needs the same "
                "penalty on every output and few unpenalised coordinates."
            )
        forms = {form: forms[form]}
    fitting = {f: c for f, c in forms.items() if c[1] <= budget}
    record = {"requested": method, "memory_budget": budget,
              **{f"{f}_flops": c[0] for f, c in forms.items()},
              **{f"{f}_bytes": c[1] for f, c in forms.items()}}
    if method == "auto":
        cg = _cg_cost(gram, newton)
        record["cg_flops_estimate"] = cg
        cheap = {f: c for f, c in fitting.items() if c[0] <= cg}
        if not cheap:
            why = ("no direct form fits in the memory budget of "
                   f"{_gib(budget)}" if not fitting else
                   "a factorisation costs more than the estimated cg work")
            record["reason"] = f"cg: {why}"
            return "cg", None, record
        form = min(cheap, key=lambda f: cheap[f][0])
    else:
        pool = fitting or forms
        form = min(pool, key=lambda f: pool[f][0 if fitting else 1])
    flops, nbytes = forms[form]
    size = (f"{n_params} x {n_params} Hessian" if form == "primal" else
            f"{gram.Z.shape[0] * gram.n_outputs}-row kernel")
    record["reason"] = (
        f"direct ({form}): the {size} takes {_gib(nbytes)} of a "
        f"{_gib(budget)} budget and {flops:.3g} flops"
        + (", the cheapest form" if len(forms) > 1 else "")
        + ("" if fitting else "; nothing fits the budget, so the smallest form"))
    return "direct", form, record
