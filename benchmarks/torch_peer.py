"""torch.optim's side of the benchmarks, in a process of its own.

Run by run.py as ``python torch_peer.py CASE [--quick] [--threads N]``, with
the interpreter given by ``--torch-python`` (a virtual environment holding
torch and numpy, without PyTensor); prints ``RESULT {json}``. The same
cases as workers.py: ``kernel``, ``kernel[1 thread]``, ``overhead``, ``mlp``.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

THREADS = 1
if "--threads" in sys.argv:
    THREADS = int(sys.argv[sys.argv.index("--threads") + 1])
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def kernel(quick, threads):
    torch.set_num_threads(threads)
    out = {}
    for count, n in common.KERNEL_SIZES:
        grads = common.kernel_grads(count, n)
        params = []
        for g in grads:
            p = torch.zeros(n, dtype=torch.float32, requires_grad=True)
            p.grad = torch.from_numpy(g)
            params.append(p)
        opt = torch.optim.RMSprop(params, lr=common.LR, alpha=common.GAMMA,
                                  eps=common.TORCH_EPS, centered=True, foreach=True)
        for _ in range(3):
            opt.step()
        after3 = np.concatenate([p.detach().numpy()[:1000] for p in params])
        out[common.kernel_label(count, n)] = {
            "samples": common.samples(opt.step, common.kernel_repeat(count, n, quick)),
            "after3": after3}
    return out


def rosenbrock(x0, x1):
    return 100 * (x1 - x0 ** 2) ** 2 + (1 - x0) ** 2


def overhead(quick):
    torch.set_num_threads(1)
    updates = 2000 if quick else 10000
    x = torch.tensor(np.array(common.ROSENBROCK_START, "float32"), requires_grad=True)
    opt = torch.optim.RMSprop([x], lr=common.LR, alpha=common.GAMMA, eps=common.TORCH_EPS,
                              centered=True)

    def loop():
        for _ in range(updates):
            opt.zero_grad()
            rosenbrock(x[0], x[1]).backward()
            opt.step()
    times = common.samples(loop, 3 if quick else 5, sample_seconds=0)
    return {"torch backward + step (1 thread)": [t / updates for t in times]}


def mlp(quick, threads):
    torch.set_num_threads(threads)
    batches = 40 if quick else 200
    (X, Y, labels), (Xe, Ye, le) = common.mlp_data(batches)
    order = common.mlp_order(len(X))
    tX, tl = torch.from_numpy(X[order]), torch.from_numpy(labels[order])
    tXe, tle = torch.from_numpy(Xe), torch.from_numpy(le)
    weights = common.mlp_weights()

    def forward(tw, xb):
        h = xb
        for i in range(0, len(tw), 2):
            h = h @ tw[i] + tw[i + 1]
            if i + 2 < len(tw):
                h = torch.tanh(h)
        return h

    def one_pass(count=batches):
        tw = [torch.tensor(w, requires_grad=True) for w in weights]
        opt = torch.optim.RMSprop(tw, lr=common.LR, alpha=common.GAMMA, eps=common.TORCH_EPS,
                                  centered=True, foreach=True)
        t = time.perf_counter()
        for b in range(count):
            xb, lb = tX[b * 128:(b + 1) * 128], tl[b * 128:(b + 1) * 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(forward(tw, xb), lb).backward()
            opt.step()
        elapsed = time.perf_counter() - t
        with torch.no_grad():
            final = float(torch.nn.functional.cross_entropy(forward(tw, tXe), tle))
        return elapsed / count, final

    one_pass(3)  # warm-up on throw-away weights
    passes = [one_pass() for _ in range(2 if quick else 3)]
    return {"torch": {"seconds_per_batch": [p[0] for p in passes], "loss_after": passes[0][1]}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", choices=["kernel", "kernel[1 thread]", "overhead", "mlp"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.case == "kernel":
        result = kernel(args.quick, os.cpu_count())
    elif args.case == "kernel[1 thread]":
        result = kernel(args.quick, 1)
    elif args.case == "overhead":
        result = overhead(args.quick)
    else:
        result = mlp(args.quick, args.threads)
    result["version"] = torch.__version__
    common.report(result)


if __name__ == "__main__":
    main()
