"""downhill's JAX mode against torch.optim on the same GPU.

On a machine with an NVIDIA GPU, ``jax[cuda12]`` and a CUDA build of torch::

    python benchmarks/gpu.py [--json FILE] [--torch-python PYTHON]

times, each contender in a process of its own (two rounds, in turn), the
centred-RMSProp update kernel (float32, 1e6, 1e7 and 1e8 elements) and one
training step of the MLP of run.py (784-256-256-10 tanh, softmax
cross-entropy, batches of 128 and 4096), and prints medians and the ratios
torch / downhill. Each timed sample ends when the device is done
(``jax.block_until_ready``, ``torch.cuda.synchronize``). Before timing, both
run the kernel 3 steps from zero and must agree.

``--cpu`` runs the same code on the CPU with small sizes, as a smoke test
for machines without a GPU (its figures say nothing about GPUs).
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import common  # noqa: E402
import numpy as np  # noqa: E402

GPU_SIZES = {"kernel": [10**6, 10**7, 10**8], "mlp_batch": [128, 4096]}
CPU_SIZES = {"kernel": [10**4, 10**5], "mlp_batch": [64]}


def _samples(fn, sync, repeat):
    return common.samples(fn, repeat, sample_seconds=0.05, sync=sync)


# ----------------------------------------------------------------------
# contenders (each in its own process)

def downhill_worker(sizes, repeat, device):
    import jax
    import pytensor
    import pytensor.tensor as pt
    import downhill
    from workers import gradient_probe
    from mlp import downhill_mlp
    platform = jax.devices()[0].platform
    if device == "gpu" and platform != "gpu":
        raise SystemExit(f"jax sees no GPU (platform {platform}): pip install 'jax[cuda12]'")
    out = {"platform": platform, "kernel": {}, "mlp": {}}
    for n in sizes["kernel"]:
        grad = common.kernel_grads(1, n)[0]
        p, g = pytensor.shared(np.zeros(n, "float32"), name="p"), pytensor.shared(grad, name="g")
        opt = downhill.build("rmsprop", gradient_probe(p, g), params=[p], mode="JAX",
                             learning_rate=common.LR, rms_halflife=common.HALFLIFE,
                             rms_regularizer=common.OUR_EPS)
        opt.get_updates()
        step = opt._functions.step()[0]
        opt._functions.runtime.prepare(step)

        def sync(p=p):
            jax.block_until_ready(p.get_value(borrow=True))
        for _ in range(3):
            step()
        after3 = np.array(p.get_value(borrow=True))[:1000]  # a copy: the next step reuses the buffer
        out["kernel"][str(n)] = {"samples": _samples(step, sync, repeat), "after3": after3}
        opt._functions.release()
    for batch in sizes["mlp_batch"]:
        (X, Y, _), _ = common.mlp_data(4, batch_size=batch)
        opt, params = downhill_mlp(common.mlp_weights(), "JAX", pt.tanh)
        opt.get_updates(learning_rate=common.LR, rms_halflife=common.HALFLIFE,
                        rms_regularizer=common.OUR_EPS)
        step = opt._functions.step()[0]
        opt._functions.runtime.prepare(step)
        xb, yb = jax.device_put(X[:batch]), jax.device_put(Y[:batch])

        def sync(params=params):
            jax.block_until_ready([q.get_value(borrow=True) for q in params])
        out["mlp"][str(batch)] = {"samples": _samples(lambda: step(xb, yb), sync, repeat)}
        opt._functions.release()
    return out


def torch_worker(sizes, repeat, device):
    import torch
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    if device == "gpu" and not torch.cuda.is_available():
        raise SystemExit("torch sees no GPU: install a CUDA build of torch")
    sync = torch.cuda.synchronize if device == "gpu" else (lambda: None)
    out = {"platform": str(dev), "kernel": {}, "mlp": {}}
    for n in sizes["kernel"]:
        p = torch.zeros(n, dtype=torch.float32, device=dev, requires_grad=True)
        p.grad = torch.from_numpy(common.kernel_grads(1, n)[0]).to(dev)
        opt = torch.optim.RMSprop([p], lr=common.LR, alpha=common.GAMMA, eps=common.TORCH_EPS,
                                  centered=True, foreach=True)
        for _ in range(3):
            opt.step()
        after3 = p.detach().cpu().numpy()[:1000].copy()  # the next step writes in place
        out["kernel"][str(n)] = {"samples": _samples(opt.step, sync, repeat), "after3": after3}
    for batch in sizes["mlp_batch"]:
        (X, _, labels), _ = common.mlp_data(4, batch_size=batch)
        xb = torch.from_numpy(X[:batch]).to(dev)
        lb = torch.from_numpy(labels[:batch]).to(dev)
        tw = [torch.tensor(w, requires_grad=True, device=dev) for w in common.mlp_weights()]
        opt = torch.optim.RMSprop(tw, lr=common.LR, alpha=common.GAMMA, eps=common.TORCH_EPS,
                                  centered=True, foreach=True)

        def step():
            h = xb
            for i in range(0, len(tw), 2):
                h = h @ tw[i] + tw[i + 1]
                if i + 2 < len(tw):
                    h = torch.tanh(h)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(h, lb).backward()
            opt.step()
        out["mlp"][str(batch)] = {"samples": _samples(step, sync, repeat)}
    return out


# ----------------------------------------------------------------------

def run_worker(name, args):
    python = args.torch_python if name == "torch" else sys.executable
    argv = [python, os.path.abspath(__file__), "--worker", name]
    if args.cpu:
        argv.append("--cpu")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true",
                        help="smoke test on the CPU with small sizes (no GPU needed)")
    parser.add_argument("--torch-python", default=sys.executable, metavar="PYTHON",
                        help="interpreter with torch (default this one)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = CPU_SIZES if args.cpu else GPU_SIZES
    repeat = 3 if args.cpu else 9
    device = "cpu" if args.cpu else "gpu"
    if args.worker:
        work = downhill_worker if args.worker == "downhill[JAX]" else torch_worker
        common.report(work(sizes, repeat, device))
        return
    if args.cpu:  # JAX on the CPU: one device is enough here
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    names = ["downhill[JAX]", "torch"]
    runs = {name: [] for name in names}
    start = time.perf_counter()
    for _ in range(args.rounds):
        for name in names:
            runs[name].append(run_worker(name, args))
    rows, results = [], {"device": device, "platforms": {n: runs[n][0]["platform"] for n in names},
                         "seconds": {}, "ratios": {}}
    for case, keys in (("kernel", sizes["kernel"]), ("mlp", sizes["mlp_batch"])):
        for key in map(str, keys):
            med = {n: float(np.median([s for r in runs[n] for s in r[case][key]["samples"]]))
                   for n in names}
            if case == "kernel":
                ours = np.asarray(runs["downhill[JAX]"][0]["kernel"][key]["after3"])
                theirs = np.asarray(runs["torch"][0]["kernel"][key]["after3"])
                if np.max(np.abs(ours - theirs)) > 1e-3 * np.max(np.abs(ours)):
                    raise AssertionError(f"kernel {key}: downhill and torch disagree")
            label = (f"kernel, centred RMSProp, N={int(key):.0e}" if case == "kernel"
                     else f"MLP step, batch {key}")
            results["seconds"][label] = med
            results["ratios"][label] = med["torch"] / med["downhill[JAX]"]
            rows.append((label, med["downhill[JAX]"] * 1e3, med["torch"] * 1e3,
                         results["ratios"][label]))
    print(f"downhill[JAX] vs torch on {device} ({results['platforms']}); medians over "
          f"{args.rounds} processes each, {time.perf_counter() - start:.0f} s")
    print(f"  {'what':<40} {'downhill ms':>12} {'torch ms':>10} {'torch/downhill':>15}")
    for label, ours, theirs, ratio in rows:
        print(f"  {label:<40} {ours:>12.4g} {theirs:>10.4g} {ratio:>15.3g}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
