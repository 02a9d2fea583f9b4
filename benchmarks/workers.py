"""downhill's and the hand-written limit's side of the benchmarks, one
contender per process.

Run by run.py as ``python workers.py CASE CONTENDER [--quick] [--threads N]``
and prints ``RESULT {json}``. CASE is ``kernel``, ``overhead`` or ``mlp``;
CONTENDER is ``downhill[MODE]`` (MODE a PyTensor compile mode: NUMBA, CVM,
JAX), in the kernel case ``downhill[NUMBA][N threads]`` (the parallel
update loops on N threads), ``downhill[NUMBA], tanh as 2sigmoid(2x)-1``
(mlp), or ``limit[N threads]`` (kernel). ``--threads`` sets the BLAS
threads. torch runs in torch_peer.py.
"""

import argparse
import os
import sys
import time

THREADS = 1
if "--threads" in sys.argv:
    THREADS = int(sys.argv[sys.argv.index("--threads") + 1])
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS))

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402
import numpy as np  # noqa: E402


def _mode(contender):
    mode = contender.split("[", 1)[1].split("]", 1)[0]
    return None if mode == "NUMBA" else mode


def _threads(contender):
    """N of a contender named ``...[N threads]`` (or ``[1 thread]``), else None."""
    if not contender.endswith(("threads]", "thread]")):
        return None
    return int(contender.rsplit("[", 1)[1].split()[0])


#: How the kernel case drives downhill the way users do: opt.iterate in each
#: on_nonfinite mode (raise and stop compile the same step, skip the guarded
#: one), and opt.minimize.
ITERATE_MODES = ("raise", "stop", "skip")


def iteration_updates(count, n):
    """Updates per iteration of the iterate rows (an iteration of ~10-30 ms)."""
    return max(3, min(2000, int(3e7 / (count * n))))


def _sync_for(opt, mode):
    """A callable that waits for JAX's asynchronous steps (None otherwise)."""
    if mode != "JAX":
        return None
    import jax

    def sync():
        jax.block_until_ready([p.get_value(borrow=True) for p in opt.params])
    return sync


def gradient_probe(param, grad):
    """A loss whose gradient with respect to ``param`` is the array ``grad``.

    Its value costs nothing (a sum over an empty slice), so a step compiled
    from it times the update kernel alone.
    """
    from pytensor.compile.builders import OpFromGraph
    p, g = param.type(), grad.type()
    probe = OpFromGraph([p, g], [(p[:0] * g[:0]).sum()], inline=True,
                        pullback=lambda inputs, outputs, grads: [
                            inputs[1] * grads[0], inputs[1].zeros_like()])
    return probe(param, grad)


def kernel_downhill(mode, quick, threads=None):
    """The raw compiled step, and (Numba) opt.iterate and opt.minimize with
    their own compiled steps, per kernel size: seconds per update."""
    import numba
    import pytensor
    import downhill
    out = {}
    if threads is not None:
        numba.set_num_threads(threads)  # the raw step's loops
    hypers = dict(learning_rate=common.LR, rms_halflife=common.HALFLIFE,
                  rms_regularizer=common.OUR_EPS)
    for count, n in common.KERNEL_SIZES:
        grads = common.kernel_grads(count, n)
        params = [pytensor.shared(np.zeros(n, "float32"), name=f"p{i}") for i in range(count)]
        shared_g = [pytensor.shared(g, name=f"g{i}") for i, g in enumerate(grads)]
        loss = sum(gradient_probe(p, g) for p, g in zip(params, shared_g))
        opt = downhill.build("rmsprop", loss, params=params, mode=mode, **hypers)
        opt.get_updates()
        step, _, _ = opt._functions.step()
        step.trust_input = True
        if mode == "JAX":  # parameters, state and gradients on the device
            opt._functions.runtime.prepare(step)
        sync = _sync_for(opt, mode)
        for _ in range(3):
            step()
        after3 = np.concatenate([np.asarray(p.get_value(borrow=True))[:1000] for p in params])
        label = common.kernel_label(count, n)
        out[label] = {
            "samples": common.samples(step, common.kernel_repeat(count, n, quick), sync=sync),
            "after3": after3}
        opt._functions.release()
        if mode is None:
            out[label].update(_through_iterate(opt, count, n, quick, threads, hypers))
            out[label][LOSS_ROW] = _with_a_real_loss(count, n, quick, threads, hypers)
    return out


#: The row of the kernel case whose loss is computed: the setting of the
#: issue that prompted these rows (its sum is part of the step).
LOSS_ROW = "iterate raise, loss sum(p * g)"


def _with_a_real_loss(count, n, quick, threads, hypers):
    """Seconds per update through opt.iterate when the loss is ``sum(p * g)``
    over every parameter (gradient ``g``, as the probe's), so that the step
    computes a product of every parameter's size and sums it."""
    import pytensor
    import downhill
    grads = common.kernel_grads(count, n)
    params = [pytensor.shared(np.zeros(n, "float32"), name=f"p{i}") for i in range(count)]
    shared_g = [pytensor.shared(g, name=f"g{i}") for i, g in enumerate(grads)]
    opt = downhill.build("rmsprop", sum((p * g).sum() for p, g in zip(params, shared_g)),
                         params=params, **hypers)
    updates = iteration_updates(count, n)
    train = downhill.Dataset(lambda: [], iteration_size=updates, name="train")
    valid = downhill.Dataset(lambda: [], iteration_size=1, name="valid")
    loop = opt.iterate(train, valid, threads=threads, validate_every=10**9, patience=10**9,
                       progressbar=False, **hypers)
    next(loop)
    next(loop)
    samples = []
    for _ in range(4 if quick else 10):
        t = time.perf_counter()
        next(loop)
        samples.append((time.perf_counter() - t) / updates)
    loop.close()
    return samples


def _through_iterate(opt, count, n, quick, threads, hypers):
    """Seconds per update through opt.iterate (one iteration of many updates
    per sample, from one running loop: validation only before the first) in
    each on_nonfinite mode, and through opt.minimize (its validations, the
    copy of the best parameters and their restoring included)."""
    import downhill
    updates = iteration_updates(count, n)
    repeat = 4 if quick else 10
    out = {}
    for on_nonfinite in ITERATE_MODES:
        train = downhill.Dataset(lambda: [], iteration_size=updates, name="train")
        valid = downhill.Dataset(lambda: [], iteration_size=1, name="valid")
        loop = opt.iterate(train, valid, threads=threads, on_nonfinite=on_nonfinite,
                           validate_every=10**9, patience=10**9, progressbar=False, **hypers)
        next(loop)  # compiles (once per structure), validates once
        next(loop)
        samples = []
        for _ in range(repeat):
            t = time.perf_counter()
            next(loop)
            samples.append((time.perf_counter() - t) / updates)
        loop.close()
        out[f"iterate {on_nonfinite}"] = samples
    train = downhill.Dataset(lambda: [], iteration_size=updates, name="train")
    valid = downhill.Dataset(lambda: [], iteration_size=1, name="valid")
    iterations = max(3 if quick else 5, -(-50 // updates))  # at least 50 updates
    samples = []
    for _ in range(2 if quick else 3):
        t = time.perf_counter()
        opt.minimize(train, valid, max_updates=iterations, threads=threads,
                     validate_every=10**9, patience=10**9, progressbar=False, **hypers)
        samples.append((time.perf_counter() - t) / (iterations * updates))
    out["minimize"] = samples
    return out


def _limit_kernel():
    """The limit: centred RMSProp (our convention) as a hand-written numba
    loop in one pass, on all cores."""
    import numba

    @numba.njit(parallel=True, fastmath=True, cache=False)
    def limit_kernel(p, g, f, s, lr, gamma, eps):
        keep = np.float32(1) - gamma
        for i in numba.prange(p.size):
            gi = g[i]
            fi = gamma * f[i] + keep * gi
            si = gamma * s[i] + keep * gi * gi
            f[i] = fi
            s[i] = si
            var = max(si - fi * fi, np.float32(0))
            p[i] -= lr * gi / np.sqrt(var + eps)
    return numba, limit_kernel


def kernel_limit(threads, quick):
    numba, limit_kernel = _limit_kernel()
    numba.set_num_threads(threads)
    lr, gm, eps = np.float32(common.LR), np.float32(common.GAMMA), np.float32(common.OUR_EPS)
    out = {}
    for count, n in common.KERNEL_SIZES:
        arrays = [(np.zeros(n, "float32"), g, np.zeros(n, "float32"), np.zeros(n, "float32"))
                  for g in common.kernel_grads(count, n)]

        def limit():
            for p, g, f, s in arrays:
                limit_kernel(p, g, f, s, lr, gm, eps)
        for _ in range(3):
            limit()
        after3 = np.concatenate([a[0][:1000] for a in arrays])
        out[common.kernel_label(count, n)] = {
            "samples": common.samples(limit, common.kernel_repeat(count, n, quick)),
            "after3": after3}
    return out


def rosenbrock_loss(x0, x1):
    return 100 * (x1 - x0 ** 2) ** 2 + (1 - x0) ** 2


def overhead_downhill(mode, quick):
    import pytensor
    import downhill
    updates = 2000 if quick else 10000
    repeat = 3 if quick else 5
    x = pytensor.shared(np.array(common.ROSENBROCK_START, "float32"), name="x")
    opt = downhill.build("rmsprop", rosenbrock_loss(x[0], x[1]), mode=mode,
                         learning_rate=common.LR, rms_halflife=common.HALFLIFE)
    data = downhill.Dataset(lambda: [], iteration_size=updates)
    once = downhill.Dataset(lambda: [], iteration_size=1)

    def defaults():  # one update per iteration, validation every 10
        for _ in opt.iterate(max_updates=updates, patience=10**9):
            pass

    # the same with a learning-rate schedule, which the step computes itself
    from downhill.schedules import CosineWithWarmup
    scheduled_opt = downhill.build(
        "rmsprop", rosenbrock_loss(x[0], x[1]), mode=mode, rms_halflife=common.HALFLIFE,
        learning_rate=CosineWithWarmup(common.LR, warmup=100, total=10**9, final=common.LR))

    def scheduled():
        for _ in scheduled_opt.iterate(max_updates=updates, patience=10**9):
            pass

    def many():  # many updates per iteration: the loop's per-update cost alone
        for _ in opt.iterate(data, once, max_updates=1, patience=10**9):
            pass
    many()  # compile and load both functions first
    scheduled()
    step, _, _ = opt._functions.step()
    step.trust_input = True

    def raw():
        for _ in range(updates):
            step()
    scheduled_step, _, _ = scheduled_opt._functions.step()
    scheduled_step.trust_input = True

    def scheduled_raw():
        for _ in range(updates):
            scheduled_step()
    name = f"downhill[{mode or 'NUMBA'}]"
    return {f"{name} iterate, defaults (1 update/iter, validate/10)":
            [t / updates for t in common.samples(defaults, repeat, sample_seconds=0)],
            f"{name} iterate, defaults, graph schedule":
            [t / updates for t in common.samples(scheduled, repeat, sample_seconds=0)],
            f"{name} iterate, {updates} updates/iteration":
            [t / updates for t in common.samples(many, repeat, sample_seconds=0)],
            f"{name} raw compiled step":
            [t / updates for t in common.samples(raw, repeat, sample_seconds=0)],
            f"{name} raw compiled step, graph schedule":
            [t / updates for t in common.samples(scheduled_raw, repeat, sample_seconds=0)]}


def mlp_downhill(contender, quick):
    import pytensor.tensor as pt
    import downhill
    from mlp import downhill_mlp, sigmoid_tanh
    mode = _mode(contender)
    tanh = sigmoid_tanh if "sigmoid" in contender else pt.tanh
    batches = 40 if quick else 200
    (X, Y, _), (Xe, Ye, _) = common.mlp_data(batches)
    opt, _ = downhill_mlp(common.mlp_weights(), mode, tanh)
    hypers = dict(learning_rate=common.LR, rms_halflife=common.HALFLIFE,
                  rms_regularizer=common.OUR_EPS)
    valid = downhill.Dataset([Xe[:128], Ye[:128]], batch_size=128, name="valid")
    held_out = downhill.Dataset([Xe, Ye], batch_size=1024, name="held-out")
    opt.get_updates(**hypers)
    variables = opt.params + opt.state_variables
    saved = [v.get_value() for v in variables]
    before = opt.evaluate(held_out)["loss"]

    def one_pass():
        for v, value in zip(variables, saved):
            v.set_value(value.copy())
        train = downhill.Dataset([X, Y], batch_size=128, rng=0, name="train", shuffle_samples=True)
        it = opt.iterate(train, valid, validate_every=10**6, **hypers)
        t = time.perf_counter()
        next(it)  # one validation batch, then the pass
        elapsed = time.perf_counter() - t
        final = opt.evaluate(held_out)["loss"]  # before close() restores the best
        it.close()
        return elapsed / batches, final
    one_pass()  # compiles (JAX: traces) everything on the way
    passes = [one_pass() for _ in range(2 if quick else 3)]
    losses = {p[1] for p in passes}
    if len(losses) != 1:
        raise AssertionError(f"MLP {contender} is not reproducible: {losses}")
    return {contender: {"seconds_per_batch": [p[0] for p in passes],
                        "loss_after": passes[0][1], "loss_before": before}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", choices=["kernel", "overhead", "mlp"])
    parser.add_argument("contender")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.case == "kernel" and args.contender.startswith("limit"):
        result = kernel_limit(_threads(args.contender) or os.cpu_count(), args.quick)
    elif args.case == "kernel":
        result = kernel_downhill(_mode(args.contender), args.quick, _threads(args.contender))
    elif args.case == "overhead":
        result = overhead_downhill(_mode(args.contender), args.quick)
    else:
        result = mlp_downhill(args.contender, args.quick)
    common.report(result)


if __name__ == "__main__":
    main()
