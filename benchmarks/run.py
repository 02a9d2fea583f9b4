"""Benchmarks of downhill against torch.optim and the machine's limit.

Run by hand, never by the test suite::

    python benchmarks/run.py [--quick] [--json FILE] [--threads N]

Four cases (see benchmarks/README.md): the RMSProp update kernel, per-update
overhead on the 2-D Rosenbrock function, an MLP trained end to end, and
start-up time with a cold and a warm compile cache. Every figure is a median
over interleaved repeats, and every ratio compares figures from this run.
torch (``pip install -e '.[bench]'``) is the peer; without it, its rows say
so and the rest still runs.
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time

# Thread counts of BLAS (used by PyTensor's matrix products) must be fixed
# before numpy loads it; the MLP case compares both libraries at this count.
THREADS = 1
for _i, _arg in enumerate(sys.argv):
    if _arg == "--threads" and _i + 1 < len(sys.argv):
        THREADS = int(sys.argv[_i + 1])
    elif _arg.startswith("--threads="):
        THREADS = int(_arg.split("=", 1)[1])
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS))

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402
from pytensor.compile.builders import OpFromGraph  # noqa: E402

import downhill  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mlp import downhill_mlp, mlp_data, mlp_weights, sigmoid_tanh  # noqa: E402

try:
    import torch
except ImportError:  # the peer is optional
    torch = None

try:
    import numba
except ImportError:  # comes with PyTensor 3, but be safe
    numba = None

NO_TORCH = "torch not installed (pip install -e '.[bench]')"
HALFLIFE = 14.0
GAMMA = math.exp(-math.log(2) / HALFLIFE)  # torch's alpha for our half-life
LR = 1e-3
# Our epsilon sits under the square root, torch's outside: eps**2 inside the
# root matches eps outside wherever the gradient is well above eps (the MLP
# has gradient elements of 1e-8, so eps must be far below that).
TORCH_EPS = 1e-12
OUR_EPS = TORCH_EPS ** 2


# ----------------------------------------------------------------------
# helpers

def interleaved(contenders, repeat, number=None, sample_seconds=0.01, best=None):
    """Median seconds per call of each contender, timed in interleaved rounds.

    ``contenders`` maps a name to a callable (or None to skip it). Each
    round times ``number`` calls of every contender in turn, so that load
    from other processes falls on all of them alike. Before each sample one
    untimed call lets the previous contender's worker threads go idle (torch's
    OpenMP threads spin for a while after each parallel region). Without a
    ``number``, each contender gets as many calls as fill ``sample_seconds``.
    The fastest sample of each goes into ``best`` if a dict is given.
    """
    samples = {name: [] for name, fn in contenders.items() if fn is not None}
    numbers = {}
    for name in samples:
        if number is not None:
            numbers[name] = number
            continue
        fn = contenders[name]
        fn()
        t = time.perf_counter()
        fn()
        single = max(time.perf_counter() - t, 1e-7)
        numbers[name] = max(1, min(10000, int(sample_seconds / single)))
    for _ in range(repeat):
        for name in samples:
            fn, n = contenders[name], numbers[name]
            fn()
            t = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t) / n)
    if best is not None:
        best.update({name: float(np.min(s)) for name, s in samples.items()})
    return {name: float(np.median(s)) for name, s in samples.items()}


def ratio(a, b):
    return None if a is None or b is None else a / b


class Table:
    """Rows of (case, what, figure, unit, note), printed at the end."""

    def __init__(self):
        self.rows = []

    def add(self, case, what, value, unit, note=""):
        self.rows.append({"case": case, "what": what, "value": value, "unit": unit,
                          "note": note})

    @staticmethod
    def _text(r):
        v = r["value"]
        if v is None:
            return "-"
        if r["unit"] == "":
            return f"{v:.5f}"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}"

    def markdown(self):
        lines = []
        case = None
        for r in self.rows:
            if r["case"] != case:
                case = r["case"]
                lines += ["", f"**{case}**", "", "| what | median | unit | note |",
                          "| --- | ---: | --- | --- |"]
            lines.append(f"| {r['what']} | {self._text(r)} | {r['unit']} | {r['note']} |")
        return "\n".join(lines) + "\n"

    def show(self):
        width = max(len(r["what"]) for r in self.rows) + 2
        case = None
        for r in self.rows:
            if r["case"] != case:
                case = r["case"]
                print(f"\n== {case}")
            text = self._text(r)
            print(f"  {r['what']:<{width}} {text:>10} {r['unit']:<8} {r['note']}")


def gradient_probe(param, grad):
    """A loss whose gradient with respect to ``param`` is the array ``grad``.

    Its value costs nothing (a sum over an empty slice), so a step compiled
    from it times the update kernel alone.
    """
    p, g = param.type(), grad.type()
    probe = OpFromGraph([p, g], [(p[:0] * g[:0]).sum()], inline=True,
                        pullback=lambda inputs, outputs, grads: [
                            inputs[1] * grads[0], inputs[1].zeros_like()])
    return probe(param, grad)


if numba is not None:
    @numba.njit(parallel=True, fastmath=True, cache=False)
    def limit_kernel(p, g, f, s, lr, gamma, eps):
        """Centred RMSProp (our convention) in one pass, on all cores."""
        keep = np.float32(1) - gamma
        for i in numba.prange(p.size):
            gi = g[i]
            fi = gamma * f[i] + keep * gi
            si = gamma * s[i] + keep * gi * gi
            f[i] = fi
            s[i] = si
            var = max(si - fi * fi, np.float32(0))
            p[i] -= lr * gi / np.sqrt(var + eps)


# ----------------------------------------------------------------------
# case 1: the update kernel

def kernel_case(table, results, quick, modes):
    case = "1. update kernel: centred RMSProp, float32, median per step"
    sizes = [(1, 10**3), (1, 10**5), (1, 10**6), (1, 10**7), (20, 5 * 10**4)]
    if torch is not None:
        torch.set_num_threads(os.cpu_count())
    out = {"threads": {"downhill": "PyTensor Numba elemwise: 1",
                       "torch": os.cpu_count(), "limit": os.cpu_count(),
                       "torch[1 thread]": 1, "limit[1 thread]": 1},
           "sizes": {}}
    for count, n in sizes:
        label = f"{n:.0e}" if count == 1 else f"{count}x{n:.0e}"
        total = count * n
        repeat = (5 if quick else 15) if total >= 10**7 else (11 if quick else 51)
        rng = np.random.default_rng(0)
        # gradients at least 0.01 in size, so that where epsilon sits (our
        # convention versus torch's) cannot show in the comparison below
        grads = [np.copysign(np.maximum(np.abs(g), 0.01), g).astype("float32")
                 for g in (rng.normal(size=n) for _ in range(count))]
        contenders = {}
        # downhill, through its compiled step, in each requested mode
        opts = {}
        for mode in modes:
            params = [pytensor.shared(np.zeros(n, "float32"), name=f"p{i}")
                      for i in range(count)]
            shared_g = [pytensor.shared(g, name=f"g{i}") for i, g in enumerate(grads)]
            loss = sum(gradient_probe(p, g) for p, g in zip(params, shared_g))
            opt = downhill.build("rmsprop", loss, params=params, mode=mode,
                                 learning_rate=LR, rms_halflife=HALFLIFE,
                                 rms_regularizer=OUR_EPS)
            step, _, _ = opt._compiled_step()
            step.trust_input = True
            opts[mode] = (opt, params)
            contenders[f"downhill[{mode or 'NUMBA'}]"] = step
        # the hand-written limit
        if numba is not None:
            lim = [(np.zeros(n, "float32"), g, np.zeros(n, "float32"), np.zeros(n, "float32"))
                   for g in grads]
            lr, gm, eps = np.float32(LR), np.float32(GAMMA), np.float32(OUR_EPS)

            def limit(lim=lim, lr=lr, gm=gm, eps=eps, threads=os.cpu_count()):
                numba.set_num_threads(threads)
                for p, g, f, s in lim:
                    limit_kernel(p, g, f, s, lr, gm, eps)
            contenders["limit"] = limit
            contenders["limit[1 thread]"] = lambda limit=limit: limit(threads=1)
        # torch
        if torch is not None:
            tparams = []
            for g in grads:
                tp = torch.zeros(n, dtype=torch.float32, requires_grad=True)
                tp.grad = torch.from_numpy(g)
                tparams.append(tp)
            topt = torch.optim.RMSprop(tparams, lr=LR, alpha=GAMMA, eps=TORCH_EPS,
                                       centered=True, foreach=True)
            def torch_step(threads=os.cpu_count(), step=topt.step):
                torch.set_num_threads(threads)
                step()
            contenders["torch"] = torch_step
            contenders["torch[1 thread]"] = lambda step=torch_step: step(threads=1)
        # same computation? three steps from zero in each, then compare
        for name, fn in contenders.items():
            for _ in range(3 if "1 thread" not in name else 0):
                fn()
        reference = np.concatenate([p.get_value(borrow=True) for p in opts[modes[0]][1]])
        agree = {}
        for mode in modes[1:]:
            other = np.concatenate([p.get_value(borrow=True) for p in opts[mode][1]])
            agree[f"downhill[{mode}]"] = float(np.max(np.abs(other - reference)))
        if numba is not None:
            agree["limit"] = float(np.max(np.abs(np.concatenate([x[0] for x in lim]) - reference)))
        if torch is not None:
            with torch.no_grad():
                agree["torch"] = float(np.max(np.abs(
                    np.concatenate([tp.detach().numpy() for tp in tparams]) - reference)))
        step_size = float(np.max(np.abs(reference)))
        for name, diff in agree.items():
            if diff > 1e-3 * step_size:
                raise AssertionError(f"kernel {label}: {name} differs from downhill by {diff}"
                                     f" after 3 steps (step size {step_size})")
        best = {}
        times = interleaved(contenders, repeat, best=best)
        ours = times[f"downhill[{modes[0] or 'NUMBA'}]"]
        ours_best = best[f"downhill[{modes[0] or 'NUMBA'}]"]
        entry = {"seconds": times, "max_abs_diff_after_3_steps": agree,
                 "torch/downhill": ratio(times.get("torch"), ours),
                 "downhill/limit": ratio(ours, times.get("limit")),
                 "torch[1 thread]/downhill": ratio(times.get("torch[1 thread]"), ours),
                 "downhill/limit[1 thread]": ratio(ours, times.get("limit[1 thread]")),
                 "fastest_sample_seconds": best,
                 "fastest: torch/downhill": ratio(best.get("torch"), ours_best),
                 "fastest: downhill/limit": ratio(ours_best, best.get("limit"))}
        out["sizes"][label] = entry
        for name, t in times.items():
            table.add(case, f"N={label} {name}", t * 1e3, "ms",
                      f"fastest sample {best[name] * 1e3:.3g}")
        if torch is None:
            table.add(case, f"N={label} torch", None, "", NO_TORCH)

        def fastest(key):
            value = entry[f"fastest: {key}"]
            return "" if value is None else f"fastest samples: {value:.3g}"
        table.add(case, f"N={label} torch/downhill", entry["torch/downhill"], "x",
                  ("target >= 3; " if total >= 10**6 else "") + fastest("torch/downhill"))
        table.add(case, f"N={label} downhill/limit", entry["downhill/limit"], "x",
                  ("target <= 1.5; " if total >= 10**6 else "") + fastest("downhill/limit"))
        table.add(case, f"N={label} downhill/limit[1 thread]", entry["downhill/limit[1 thread]"],
                  "x")
        del contenders, opts
    results["kernel"] = out


# ----------------------------------------------------------------------
# case 2: overhead per update

def rosenbrock_loss(x0, x1):
    return 100 * (x1 - x0 ** 2) ** 2 + (1 - x0) ** 2


def overhead_case(table, results, quick, modes):
    case = "2. overhead: 2-D Rosenbrock, float32, RMSProp, median per update"
    updates = 2000 if quick else 10000
    repeat = 5 if quick else 9
    start = np.array([-1.1, 1.2], "float32")

    def make(mode):
        x = pytensor.shared(start.copy(), name="x")
        opt = downhill.build("rmsprop", rosenbrock_loss(x[0], x[1]), mode=mode,
                             learning_rate=LR, rms_halflife=HALFLIFE)
        return opt, x

    contenders = {}
    keep = {}
    for mode in modes:
        opt, x = make(mode)
        keep[mode] = opt
        # one update per iteration, validation every 10 (the defaults)
        def through_iterate(opt=opt):
            for _ in opt.iterate(max_updates=updates, patience=10**9):
                pass
        # many updates per iteration: the loop's per-update cost alone
        data = downhill.Dataset(lambda: [], iteration_size=updates)
        once = downhill.Dataset(lambda: [], iteration_size=1)

        def through_iterate_pass(opt=opt, data=data, once=once):
            for _ in opt.iterate(data, once, max_updates=1, patience=10**9):
                pass
        step, _, _ = opt._compiled_step()

        def raw(step=step):
            step.trust_input = True
            for _ in range(updates):
                step()
        name = mode or "NUMBA"
        contenders[f"downhill[{name}] iterate, defaults (1 update/iter, validate/10)"] = \
            through_iterate
        contenders[f"downhill[{name}] iterate, {updates} updates/iteration"] = \
            through_iterate_pass
        contenders[f"downhill[{name}] raw compiled step"] = raw
        through_iterate_pass()  # compile and load both functions first
    if torch is not None:
        torch.set_num_threads(1)
        tx = torch.tensor(start.copy(), requires_grad=True)
        topt = torch.optim.RMSprop([tx], lr=LR, alpha=GAMMA, eps=TORCH_EPS, centered=True)

        def torch_loop():
            for _ in range(updates):
                topt.zero_grad()
                loss = rosenbrock_loss(tx[0], tx[1])
                loss.backward()
                topt.step()
        contenders["torch backward + step (1 thread)"] = torch_loop
        torch_loop()
    times = interleaved(contenders, repeat)
    per_update = {name: t / updates for name, t in times.items()}
    out = {"updates_per_timing": updates, "seconds_per_update": per_update,
           "updates_per_second": {name: 1 / t for name, t in per_update.items()}}
    torch_t = per_update.get("torch backward + step (1 thread)")
    for name, t in per_update.items():
        note = f"{1 / t:,.0f} updates/s"
        if "iterate" in name:
            note += "; target <= 20 us"
        table.add(case, name, t * 1e6, "us", note)
    if torch is None:
        table.add(case, "torch backward + step", None, "", NO_TORCH)
    for name, t in per_update.items():
        if name.startswith("downhill") and torch_t is not None:
            out.setdefault("torch/downhill", {})[name] = torch_t / t
    if torch_t is not None:
        first = next(n for n in per_update if "iterate, defaults" in n)
        table.add(case, "torch / downhill opt.iterate (defaults)", torch_t / per_update[first], "x")
    results["overhead"] = out


# ----------------------------------------------------------------------
# case 3: end to end

def mlp_case(table, results, quick, modes):
    case = f"3. end to end: MLP 784-256-256-10 tanh, batch 128, RMSProp, {THREADS} thread(s) each"
    batches = 40 if quick else 200
    repeat = 3 if quick else 5
    (X, Y, labels), (Xe, Ye, le) = mlp_data(batches)
    weights = mlp_weights()
    hypers = dict(learning_rate=LR, rms_halflife=HALFLIFE, rms_regularizer=OUR_EPS)
    out = {"batches": batches, "threads": THREADS, "passes": repeat, "loss_after": {}}
    passes = {}  # name -> callable running one pass from the same start
    order = []

    def downhill_pass(mode, tanh=pt.tanh):
        opt, _ = downhill_mlp(weights, mode, tanh)
        valid = downhill.Dataset([Xe[:128], Ye[:128]], batch_size=128, name="valid")
        held_out = downhill.Dataset([Xe, Ye], batch_size=1024, name="held-out")
        # compile, and load both functions with one call each, then restore
        opt.get_updates(**hypers)
        step, evaluate = opt._compiled_step()[0], opt._compiled_eval()
        evaluate(Xe[:128], Ye[:128])
        out["loss_before"] = opt.evaluate(held_out)["loss"]
        variables = opt.params + opt.state_variables
        saved = [v.get_value() for v in variables]
        step(Xe[:128], Ye[:128])

        def run():
            for v, value in zip(variables, saved):
                v.set_value(value.copy())
            train = downhill.Dataset([X, Y], batch_size=128, rng=0, name="train")
            it = opt.iterate(train, valid, validate_every=10**6, **hypers)
            t = time.perf_counter()
            trained, _ = next(it)  # one validation batch, then the pass
            elapsed = time.perf_counter() - t
            final = opt.evaluate(held_out)["loss"]
            it.close()
            order[:] = train._buffers  # the one permutation this pass used
            return elapsed, trained["loss"], final
        return run

    for mode in modes:
        passes[f"downhill[{mode or 'NUMBA'}]"] = downhill_pass(mode)
    # the same model with tanh(x) written as 2 sigmoid(2x) - 1, to show what
    # PyTensor's scalar tanh costs
    passes[f"downhill[{modes[0] or 'NUMBA'}], tanh as 2sigmoid(2x)-1"] = \
        downhill_pass(modes[0], sigmoid_tanh)
    passes[f"downhill[{modes[0] or 'NUMBA'}]"]()  # fixes the batch order for torch
    if torch is not None:
        torch.set_num_threads(THREADS)
        tX, tl = torch.from_numpy(order[0]), torch.from_numpy(np.argmax(order[1], axis=1))
        tXe, tle = torch.from_numpy(Xe), torch.from_numpy(le)

        def forward(tw, xb):
            h = xb
            for i in range(0, len(tw), 2):
                h = h @ tw[i] + tw[i + 1]
                if i + 2 < len(tw):
                    h = torch.tanh(h)
            return h

        def torch_pass(count=batches):
            tw = [torch.tensor(w, requires_grad=True) for w in weights]
            topt = torch.optim.RMSprop(tw, lr=LR, alpha=GAMMA, eps=TORCH_EPS,
                                       centered=True, foreach=True)
            total = 0.0
            t = time.perf_counter()
            for b in range(count):
                xb, lb = tX[b * 128:(b + 1) * 128], tl[b * 128:(b + 1) * 128]
                topt.zero_grad()
                loss = torch.nn.functional.cross_entropy(forward(tw, xb), lb)
                loss.backward()
                topt.step()
                total += loss.item()
            elapsed = time.perf_counter() - t
            with torch.no_grad():
                final = float(torch.nn.functional.cross_entropy(forward(tw, tXe), tle))
            return elapsed, total / count, final
        torch_pass(3)  # warm-up on throw-away weights
        passes["torch"] = torch_pass
    seconds = {name: [] for name in passes}
    for _ in range(repeat):  # interleaved passes, each from the same start
        for name, run in passes.items():
            elapsed, train_mean, final = run()
            seconds[name].append(elapsed / batches)
            previous = out["loss_after"].setdefault(name, {"train_mean": train_mean,
                                                           "eval": final})
            if previous["eval"] != final:
                raise AssertionError(f"MLP: {name} is not reproducible: {previous} vs {final}")
    per_batch = {name: float(np.median(s)) for name, s in seconds.items()}
    out["seconds_per_batch_all_passes"] = seconds
    ours_name = f"downhill[{modes[0] or 'NUMBA'}]"
    ours = out["loss_after"][ours_name]["eval"]
    for name, losses in out["loss_after"].items():
        diff = abs(losses["eval"] - ours) / abs(ours)
        losses["relative_difference_to_downhill"] = diff
        if diff > 1e-2:
            raise AssertionError(f"MLP: {name}'s loss after the pass {losses['eval']} differs "
                                 f"from downhill's {ours} by {diff:.2%}")
    out["seconds_per_batch"] = per_batch
    fastest = {name: float(np.min(s)) for name, s in seconds.items()}
    for name, t in per_batch.items():
        table.add(case, f"{name} time per batch", t * 1e3, "ms",
                  f"fastest pass {fastest[name] * 1e3:.3g}")
    if torch is None:
        table.add(case, "torch time per batch", None, "", NO_TORCH)
    for name, losses in out["loss_after"].items():
        table.add(case, f"{name} held-out loss after the pass", losses["eval"], "",
                  f"rel. diff to downhill {losses['relative_difference_to_downhill']:.1e}"
                  f" (before: {out['loss_before']:.4f})")
    out["downhill/torch"] = ratio(per_batch[ours_name], per_batch.get("torch"))
    out["fastest: downhill/torch"] = ratio(fastest[ours_name], fastest.get("torch"))
    table.add(case, f"{ours_name}/torch time per batch", out["downhill/torch"], "x",
              "target <= 0.9" + ("" if torch is None else
                                 f"; fastest passes: {out['fastest: downhill/torch']:.3g}"))
    for name in per_batch:
        if name not in (ours_name, "torch"):
            out[f"{name}/torch"] = ratio(per_batch[name], per_batch.get("torch"))
            table.add(case, f"{name}/torch", out[f"{name}/torch"], "x")
    results["end_to_end"] = out


# ----------------------------------------------------------------------
# case 4: start-up

STARTUP_SCRIPT = textwrap.dedent('''
    import json, sys, time
    t0 = time.perf_counter()
    import numpy as np
    import pytensor
    import pytensor.tensor as pt
    import downhill
    t_import = time.perf_counter() - t0
    which = sys.argv[1]
    out = {"import": t_import}
    if which == "quickstart":  # the README's quick start, verbatim
        rng = np.random.default_rng(0)
        A, B, K = 20, 30, 3
        y = (rng.normal(size=(A, K)) @ rng.normal(size=(K, B))).astype("float32")
        x = pt.matrix("x")
        u = pytensor.shared(rng.normal(size=(A, K)).astype("float32") * 0.1, name="u")
        v = pytensor.shared(rng.normal(size=(K, B)).astype("float32") * 0.1, name="v")
        loss = pt.sqr(x - u @ v).mean()
        opt = downhill.build("rmsprop", loss, monitors=[("u<0.1", (abs(u) < 0.1).mean())])
        it = opt.iterate([y], batch_size=0, learning_rate=0.01, max_updates=500)
        next(it)
        out["first_update"] = time.perf_counter() - t0
        for _ in it:
            pass
        out["total"] = time.perf_counter() - t0
        data = [y]
    else:  # the MLP of case 3
        sys.path.insert(0, sys.argv[2])
        from mlp import downhill_mlp, mlp_data, mlp_weights
        (X, Y, _), _ = mlp_data(2)
        opt, _ = downhill_mlp(mlp_weights())
        it = opt.iterate([X, Y], batch_size=128, learning_rate=1e-3)
        next(it)
        out["first_update"] = time.perf_counter() - t0
        it.close()
        data = [X, Y]
    before = len(opt._functions) + len(opt._f_eval)
    t = time.perf_counter()
    it = opt.iterate(data, batch_size=128, learning_rate=0.003)
    next(it)
    it.close()
    out["second_iterate"] = time.perf_counter() - t
    out["second_iterate_compiled"] = len(opt._functions) + len(opt._f_eval) - before
    print("RESULT", json.dumps(out))
''')


def startup_run(which, compiledir, cachedir, mode=None):
    env = dict(os.environ)
    flags = [f"base_compiledir={compiledir}"]
    if mode:
        flags.append(f"mode={mode}")
    env["PYTENSOR_FLAGS"] = ",".join(flags)
    env["NUMBA_CACHE_DIR"] = cachedir
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, "-c", STARTUP_SCRIPT, which, here], env=env,
                          capture_output=True, text=True, timeout=600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"start-up run {which} failed:\n{proc.stderr[-3000:]}")


def startup_case(table, results, quick, modes):
    case = "4. start-up (fresh process; seconds from before `import downhill`)"
    out = {}
    warm_runs = 1 if quick else 3
    for which in ("quickstart", "mlp"):
        # the MLP compiles for minutes cold with the C backend: Numba only
        for mode in modes if which == "quickstart" else modes[:1]:
            name = f"{which}[{mode or 'NUMBA'}]"
            with tempfile.TemporaryDirectory() as compiledir, \
                    tempfile.TemporaryDirectory() as cachedir:
                cold = startup_run(which, compiledir, cachedir, mode)
                warm = [startup_run(which, compiledir, cachedir, mode) for _ in range(warm_runs)]
            med = {k: float(np.median([w[k] for w in warm])) for k in warm[0]}
            out[name] = {"cold": cold, "warm_median": med, "warm_runs": warm}
            target = {"quickstart": "target total <= 0.6 s warm",
                      "mlp": "target first update <= 2 s warm"}[which]
            table.add(case, f"{name} import, warm", med["import"], "s")
            table.add(case, f"{name} first update, cold", cold["first_update"], "s")
            table.add(case, f"{name} first update, warm", med["first_update"], "s",
                      target if which == "mlp" else "")
            if which == "quickstart":
                table.add(case, f"{name} whole quick start (500 updates), cold", cold["total"], "s")
                table.add(case, f"{name} whole quick start (500 updates), warm", med["total"], "s",
                          target)
            table.add(case, f"{name} second iterate(), new learning rate", med["second_iterate"],
                      "s", f"compiled {med['second_iterate_compiled']:.0f} functions")
    results["startup"] = out


# ----------------------------------------------------------------------

def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment():
    info = {
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "pytensor": pytensor.__version__,
        "numba": numba.__version__ if numba else None,
        "torch": torch.__version__ if torch else None,
        "downhill": downhill.__version__,
        "pytensor_mode": str(pytensor.config.mode),
        "pytensor_default_linker": type(
            pytensor.compile.mode.get_default_mode().linker).__name__,
        "cpu": cpu_model(),
        "threads": {
            "mlp_case": THREADS,
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
            "numba": numba.config.NUMBA_NUM_THREADS if numba else None,
            "torch_kernel_case": os.cpu_count(),
            "torch_overhead_case": 1,
            "torch_mlp_case": THREADS,
        },
    }
    try:
        info["load"] = os.getloadavg()
    except OSError:
        pass
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes (< 3 min)")
    parser.add_argument("--json", metavar="FILE", help="write every figure and ratio here")
    parser.add_argument("--markdown", metavar="FILE", help="write the table as markdown here")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for both libraries in the MLP case (default 1)")
    parser.add_argument("--modes", default="NUMBA" if "--quick" in sys.argv else "NUMBA,CVM",
                        help="PyTensor compile modes to time, the first is downhill's figure "
                             "(default NUMBA, and CVM = the C backend for the full run; "
                             "in PyTensor 3 'FAST_RUN' is Numba too)")
    parser.add_argument("--cases", default="1,2,3,4", help="which cases to run")
    args = parser.parse_args(argv)
    modes = [None if m.upper() == "NUMBA" else m for m in args.modes.split(",")]
    table, results = Table(), {"environment": environment(), "quick": args.quick}
    start = time.perf_counter()
    cases = {"1": kernel_case, "2": overhead_case, "3": mlp_case, "4": startup_case}
    for key in args.cases.split(","):
        try:
            results.setdefault("load_at_case_start", {})[key] = os.getloadavg()[0]
        except OSError:
            pass
        t = time.perf_counter()
        cases[key](table, results, args.quick, modes)
        print(f"[case {key} took {time.perf_counter() - t:.0f} s]", file=sys.stderr, flush=True)
    results["rows"] = table.rows
    results["seconds"] = time.perf_counter() - start
    print(f"downhill benchmarks ({'quick' if args.quick else 'full'}); "
          f"{results['environment']['cpu_count']} cores, medians")
    table.show()
    print(f"\n(took {results['seconds']:.0f} s)")
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(table.markdown())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1,
                      default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))


if __name__ == "__main__":
    main()
