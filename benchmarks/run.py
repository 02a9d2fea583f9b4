"""Benchmarks of downhill against torch.optim and the machine's limit.

Run by hand, never by the test suite::

    python benchmarks/run.py [--quick] [--json FILE] [--markdown FILE]
        [--torch-python PYTHON] [--modes NUMBA,CVM,JAX] [--rounds N]

Four cases (see benchmarks/README.md): the RMSProp update kernel, per-update
overhead on the 2-D Rosenbrock function, an MLP trained end to end, and
start-up time with a cold and a warm compile cache. **Every contender runs
in a process of its own** (workers.py for downhill and the limit,
torch_peer.py for torch), ``--rounds`` times, the contenders taking turns,
so that one library's thread pools never slow another's and load from
other processes falls on all of them alike. Every figure is a median over
all samples of all rounds, and every ratio compares figures of this run.
torch (``--torch-python``: an interpreter with torch and numpy, e.g. a
virtual environment made for it) is the peer; without it its rows say so.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import common  # noqa: E402

BEFORE = "before (--baseline)"
NO_TORCH = "torch not found (--torch-python PYTHON, an interpreter with torch)"


# ----------------------------------------------------------------------
# helpers

def worker(argv, python=None, threads=1):
    """Run one contender's process; its RESULT (a failure raises)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    proc = subprocess.run([python or sys.executable] + argv + ["--threads", str(threads)],
                          env=env, capture_output=True, text=True, timeout=1200, cwd=HERE)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"benchmark process {argv} failed:\n{proc.stderr[-3000:]}")


def rounds_of(jobs, rounds):
    """Run ``jobs`` (name -> callable returning a result) ``rounds`` times,
    taking turns; the results of each name, one per round."""
    out = {name: [] for name in jobs}
    for _ in range(rounds):
        for name, job in jobs.items():
            out[name].append(job())
    return out


def median(values):
    return float(np.median(values))


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



# ----------------------------------------------------------------------
# case 1: the update kernel

def thread_counts():
    """1, 2 and all the cores this process may use (each once)."""
    return sorted({1, 2, all_cores()})


def all_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def threads_label(t):
    return f"[{t} thread{'s' if t > 1 else ''}]"


def kernel_case(table, results, args, modes):
    case = "1. update kernel: centred RMSProp, float32, median per update"
    jobs = {}
    counts = thread_counts()
    numba_first = modes[0] == "NUMBA"
    for m in modes:
        if m == "NUMBA":
            for t in counts:
                name = f"downhill[NUMBA]{threads_label(t)}"
                jobs[name] = (lambda name=name: worker(["workers.py", "kernel", name] + args.flags))
        else:
            jobs[f"downhill[{m}]"] = (lambda m=m: worker(["workers.py", "kernel", f"downhill[{m}]"]
                                                         + args.flags))
    for t in counts:
        name = f"limit{threads_label(t)}"
        jobs[name] = lambda name=name: worker(["workers.py", "kernel", name] + args.flags)
    if args.torch_python:
        jobs["torch"] = lambda: worker(["torch_peer.py", "kernel"] + args.flags,
                                       args.torch_python)
        jobs["torch[1 thread]"] = lambda: worker(["torch_peer.py", "kernel[1 thread]"]
                                                 + args.flags, args.torch_python)
    runs = rounds_of(jobs, args.rounds)
    cores = all_cores()
    ours = f"downhill[NUMBA]{threads_label(cores)}" if numba_first else f"downhill[{modes[0]}]"
    limit = f"limit{threads_label(cores)}"
    out = {"threads": {"downhill[NUMBA][N threads]": "the parallel update loops on N threads "
                       "(downhill.parallel; updates of < 32768 elements serial)",
                       "downhill[CVM]": 1, "downhill[JAX]": "XLA's CPU thread pool",
                       "torch": cores, "torch[1 thread]": 1,
                       "limit[N threads]": "numba prange on N threads"},
           "processes": "one per contender per round", "rounds": args.rounds,
           "iterate_modes": ["raise", "stop", "skip"], "sizes": {}}
    for count, n in common.KERNEL_SIZES:
        label = common.kernel_label(count, n)
        times, best = {}, {}
        for name, rs in runs.items():
            for key in rs[0][label]:
                if key == "after3":
                    continue
                what = name if key == "samples" else f"{name} {key}"
                values = [v for r in rs for v in r[label][key]]
                times[what], best[what] = median(values), min(values)
        reference = np.asarray(runs[ours][0][label]["after3"])
        step_size = float(np.max(np.abs(reference)))
        agree = {}
        for name, rs in runs.items():
            diff = float(np.max(np.abs(np.asarray(rs[0][label]["after3"]) - reference)))
            agree[name] = diff
            if diff > 1e-3 * step_size:
                raise AssertionError(f"kernel {label}: {name} differs from {ours} by {diff}"
                                     f" after 3 steps (step size {step_size})")
        users = f"{ours} iterate raise" if numba_first else ours
        entry = {"seconds": times, "fastest_sample_seconds": best,
                 "max_abs_diff_after_3_steps": agree, "ratios": {}}
        ratios = entry["ratios"]
        big = count * n >= 10**6
        ratios["torch/downhill (iterate)"] = ratio(times.get("torch"), times[users])
        ratios["torch[1 thread]/downhill (iterate)"] = ratio(times.get("torch[1 thread]"),
                                                              times[users])
        ratios["downhill (iterate)/limit, all cores"] = ratio(times[users], times[limit])
        ratios["downhill (raw step)/limit, all cores"] = ratio(times[ours], times[limit])
        ratios["torch/downhill (raw step)"] = ratio(times.get("torch"), times[ours])
        notes = {"torch/downhill (iterate)": "target >= 3" if big and count == 1 else "",
                 "downhill (iterate)/limit, all cores": "target <= 1.3" if big else ""}
        if numba_first:
            for t in counts:
                name = f"downhill[NUMBA]{threads_label(t)}"
                ratios[f"{name} iterate raise/limit{threads_label(t)}"] = ratio(
                    times[f"{name} iterate raise"], times[f"limit{threads_label(t)}"])
            for what in ("iterate stop", "iterate skip", "minimize",
                         "iterate raise, loss sum(p * g)"):
                ratios[f"{what}/iterate raise"] = ratio(times[f"{ours} {what}"], times[users])
            notes["iterate skip/iterate raise"] = "target <= 1.3" if big else ""
            ratios["iterate raise/raw step"] = ratio(times[users], times[ours])
        for m in modes[1:]:
            ratios[f"downhill[{m}]/{ours} (raw steps)"] = ratio(times[f"downhill[{m}]"],
                                                              times[ours])
        out["sizes"][label] = entry
        for name, t in times.items():
            shown = f"{name} raw step" if name in runs and name.startswith("downhill") else name
            table.add(case, f"N={label} {shown}", t * 1e3, "ms",
                      f"fastest sample {best[name] * 1e3:.3g}")
        if not args.torch_python:
            table.add(case, f"N={label} torch", None, "", NO_TORCH)
        for what, value in ratios.items():
            table.add(case, f"N={label} {what}", value, "x", notes.get(what, ""))
    results["kernel"] = out


# ----------------------------------------------------------------------
# case 2: overhead per update

def overhead_case(table, results, args, modes):
    case = "2. overhead: 2-D Rosenbrock, float32, RMSProp, median per update"
    # JAX dispatches each call: a tiny model is not what it is for
    jobs = {f"downhill[{m}]": (lambda m=m: worker(["workers.py", "overhead", f"downhill[{m}]"]
                                                  + args.flags))
            for m in modes if m != "JAX"}
    if args.torch_python:
        jobs["torch"] = lambda: worker(["torch_peer.py", "overhead"] + args.flags,
                                       args.torch_python)
    if args.baseline:  # the same worker of another checkout (its own downhill)
        script = os.path.join(os.path.abspath(args.baseline), "benchmarks", "workers.py")
        jobs[BEFORE] = lambda: worker([script, "overhead", "downhill[NUMBA]"] + args.flags)
    runs = rounds_of(jobs, args.rounds)
    per_update = {}
    for job, rs in runs.items():
        for name in rs[0]:
            if name != "version":
                shown = f"{BEFORE}: {name}" if job == BEFORE else name
                per_update[shown] = median([s for r in rs for s in r[name]])
    out = {"seconds_per_update": per_update,
           "updates_per_second": {name: 1 / t for name, t in per_update.items()}}
    torch_t = per_update.get("torch backward + step (1 thread)")
    for name, t in per_update.items():
        note = f"{1 / t:,.0f} updates/s" + ("; target <= 20 us" if "iterate" in name else "")
        table.add(case, name, t * 1e6, "us", note)
    # iterate against the raw step it calls (issue 19's target), per contender
    pairs = (("iterate, defaults (1 update/iter, validate/10)", "raw compiled step"),
             ("iterate, defaults, graph schedule", "raw compiled step, graph schedule"))
    for name in [n for n in per_update if n.endswith(" raw compiled step")]:
        contender = name[:-len(" raw compiled step")]
        for loop, raw in pairs:
            loop, raw = f"{contender} {loop}", f"{contender} {raw}"
            if loop in per_update and raw in per_update:
                ratio = per_update[loop] / per_update[raw]
                out.setdefault("iterate/raw step", {})[loop] = ratio
                table.add(case, f"{loop} / its raw step", ratio, "x", "target <= 2")
    if torch_t is None:
        table.add(case, "torch backward + step", None, "", NO_TORCH)
    else:
        first = next(n for n in per_update
                     if n.startswith("downhill") and "iterate, defaults" in n)
        out["torch/downhill"] = {name: torch_t / t for name, t in per_update.items()
                                 if name.startswith("downhill")}
        table.add(case, "torch / downhill opt.iterate (defaults)", torch_t / per_update[first],
                  "x")
    if args.baseline:
        for name, t in list(per_update.items()):
            before = per_update.get(f"{BEFORE}: {name}")
            if before is not None:
                out.setdefault("after/before", {})[name] = t / before
                table.add(case, f"{name}: this checkout / before", t / before, "x",
                          "target: does not grow")
    results["overhead"] = out


# ----------------------------------------------------------------------
# case 3: end to end

def mlp_case(table, results, args, modes):
    case = (f"3. end to end: MLP 784-256-256-10 tanh, batch 128, RMSProp, "
            f"{args.threads} thread(s) each")
    names = [f"downhill[{m}]" for m in modes]
    names.append(f"downhill[{modes[0]}], tanh as 2sigmoid(2x)-1")
    jobs = {name: (lambda name=name: worker(["workers.py", "mlp", name] + args.flags,
                                            threads=args.threads))
            for name in names}
    if args.torch_python:
        jobs["torch"] = lambda: worker(["torch_peer.py", "mlp"] + args.flags,
                                       args.torch_python, threads=args.threads)
    runs = rounds_of(jobs, args.rounds)
    ours = names[0]
    per_batch = {name: median([s for r in rs for s in r[name]["seconds_per_batch"]])
                 for name, rs in runs.items()}
    fastest = {name: min(s for r in rs for s in r[name]["seconds_per_batch"])
               for name, rs in runs.items()}
    losses = {name: rs[0][name]["loss_after"] for name, rs in runs.items()}
    before = runs[ours][0][ours]["loss_before"]
    out = {"threads": args.threads, "seconds_per_batch": per_batch, "loss_after": losses,
           "loss_before": before}
    for name, loss in losses.items():
        diff = abs(loss - losses[ours]) / abs(losses[ours])
        if diff > 1e-2:
            raise AssertionError(f"MLP: {name}'s loss after the pass {loss} differs from "
                                 f"{ours}'s {losses[ours]} by {diff:.2%}")
    for name, t in per_batch.items():
        table.add(case, f"{name} time per batch", t * 1e3, "ms",
                  f"fastest pass {fastest[name] * 1e3:.3g}")
    if not args.torch_python:
        table.add(case, "torch time per batch", None, "", NO_TORCH)
    for name, loss in losses.items():
        table.add(case, f"{name} held-out loss after the pass", loss, "",
                  f"rel. diff to {ours} {abs(loss - losses[ours]) / losses[ours]:.1e} "
                  f"(before: {before:.4f})")
    for name in per_batch:
        if name != "torch":
            out[f"{name}/torch"] = ratio(per_batch[name], per_batch.get("torch"))
            table.add(case, f"{name}/torch time per batch", out[f"{name}/torch"], "x",
                      "target <= 0.9" if name == ours else "")
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
    def compiled():
        return len(opt._functions._steps) + len(opt._functions._evals)
    before = compiled()
    t = time.perf_counter()
    it = opt.iterate(data, batch_size=128, learning_rate=0.003)
    next(it)
    it.close()
    out["second_iterate"] = time.perf_counter() - t
    out["second_iterate_compiled"] = compiled() - before
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


def startup_case(table, results, args, modes):
    case = "4. start-up (fresh process; seconds from before `import downhill`)"
    out = {}
    warm_runs = 1 if args.quick else 3
    for which in ("quickstart", "mlp"):
        # the MLP compiles for minutes cold with the C backend: Numba only
        for mode in [m for m in modes if m != "JAX"] if which == "quickstart" else modes[:1]:
            name = f"{which}[{mode}]"
            with tempfile.TemporaryDirectory() as compiledir, \
                    tempfile.TemporaryDirectory() as cachedir:
                cold = startup_run(which, compiledir, cachedir, None if mode == "NUMBA" else mode)
                warm = [startup_run(which, compiledir, cachedir, None if mode == "NUMBA" else mode)
                        for _ in range(warm_runs)]
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



def environment(args):
    info = {
        "machine": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "threads": {"mlp_case": args.threads, "torch_kernel_case": os.cpu_count()},
        "processes": "each contender in its own process, --rounds times in turn",
    }
    probe = ("import json, numpy, pytensor, numba, downhill; "
             "mods = {'pytensor': pytensor.__version__, 'numba': numba.__version__, "
             "'downhill': downhill.__version__}\n"
             "try:\n    import jax; mods['jax'] = jax.__version__\n"
             "except ImportError:\n    pass\n"
             "print(json.dumps(mods))")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    info.update(json.loads(subprocess.run([sys.executable, "-c", probe], env=env,
                                          capture_output=True, text=True).stdout))
    if args.torch_python:
        info["torch"] = subprocess.run(
            [args.torch_python, "-c", "import torch; print(torch.__version__)"],
            capture_output=True, text=True).stdout.strip()
    try:
        info["load"] = os.getloadavg()
    except OSError:
        pass
    return info


def _find_torch(python):
    """``python`` if it can import torch, else None."""
    try:
        ok = subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0
    except OSError:
        ok = False
    return python if ok else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and passes")
    parser.add_argument("--json", metavar="FILE", help="write every figure and ratio here")
    parser.add_argument("--markdown", metavar="FILE", help="write the table as markdown here")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for both libraries in the MLP case (default 1)")
    parser.add_argument("--modes", default=None,
                        help="PyTensor compile modes to time, the first is downhill's figure "
                             "(default NUMBA,JAX with --quick, else NUMBA,CVM,JAX; CVM is "
                             "the C backend; JAX needs jax)")
    parser.add_argument("--torch-python", default=sys.executable, metavar="PYTHON",
                        help="interpreter that runs torch (default this one); torch rows "
                             "are left out if it cannot import torch")
    parser.add_argument("--rounds", type=int, default=None,
                        help="processes per contender, in turn (default 2 quick, 3 full)")
    parser.add_argument("--cases", default="1,2,3,4", help="which cases to run")
    parser.add_argument("--baseline", metavar="DIR",
                        help="another checkout of downhill (e.g. main, unpacked with git "
                             "archive): case 2 also runs its overhead worker, in the same "
                             "rounds, as the 'before' rows")
    args = parser.parse_args(argv)
    modes = (args.modes or ("NUMBA,JAX" if args.quick else "NUMBA,CVM,JAX")).split(",")
    modes = [m.upper() for m in modes]
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.flags = ["--quick"] if args.quick else []
    args.torch_python = _find_torch(args.torch_python)
    table, results = Table(), {"environment": environment(args), "quick": args.quick,
                               "rounds": args.rounds}
    start = time.perf_counter()
    cases = {"1": kernel_case, "2": overhead_case, "3": mlp_case, "4": startup_case}
    for key in args.cases.split(","):
        try:
            results.setdefault("load_at_case_start", {})[key] = os.getloadavg()[0]
        except OSError:
            pass
        t = time.perf_counter()
        cases[key](table, results, args, modes)
        print(f"[case {key} took {time.perf_counter() - t:.0f} s]", file=sys.stderr, flush=True)
    results["rows"] = table.rows
    results["seconds"] = time.perf_counter() - start
    try:
        results["load_at_end"] = os.getloadavg()
    except OSError:
        pass
    print(f"downhill benchmarks ({'quick' if args.quick else 'full'}); "
          f"{results['environment']['cpu_count']} cores, medians over {args.rounds} processes "
          "per contender")
    table.show()
    print(f"\n(took {results['seconds']:.0f} s; load average at the start "
          f"{results['environment'].get('load', ['?'])[0]}, at the end "
          f"{results.get('load_at_end', ['?'])[0]})")
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(table.markdown())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1,
                      default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))


if __name__ == "__main__":
    main()
