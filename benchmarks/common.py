"""What every benchmark process shares: the settings, the data, the timing.

numpy and the standard library only, so that a peer's process (torch, in
its own virtual environment) imports it without PyTensor. Each contender
runs in a process of its own (see run.py) and prints one line
``RESULT {json}`` for the orchestrator.
"""

import json
import math
import time

import numpy as np

HALFLIFE = 14.0
GAMMA = math.exp(-math.log(2) / HALFLIFE)  # torch's alpha for our half-life
LR = 1e-3
# Our epsilon sits under the square root, torch's outside: eps**2 inside the
# root matches eps outside wherever the gradient is well above eps (the MLP
# has gradient elements of 1e-8, so eps must be far below that).
TORCH_EPS = 1e-12
OUR_EPS = TORCH_EPS ** 2

#: Kernel sizes: (number of arrays, elements each).
KERNEL_SIZES = [(1, 10**3), (1, 10**5), (1, 10**6), (1, 10**7), (20, 5 * 10**4)]
MLP_SIZES = (784, 256, 256, 10)
ROSENBROCK_START = (-1.1, 1.2)


def kernel_label(count, n):
    return f"{n:.0e}" if count == 1 else f"{count}x{n:.0e}"


def kernel_repeat(count, n, quick):
    """Samples per process (each of as many calls as fill 10 ms)."""
    return (3 if quick else 7) if count * n >= 10**7 else (7 if quick else 21)


def kernel_grads(count, n):
    """Gradients at least 0.01 in size, so that where epsilon sits (our
    convention versus torch's) cannot show in the comparison."""
    rng = np.random.default_rng(0)
    return [np.copysign(np.maximum(np.abs(g), 0.01), g).astype("float32")
            for g in (rng.normal(size=n) for _ in range(count))]


def mlp_data(batches, batch_size=128, seed=0):
    """Seeded synthetic data of MNIST's shape with learnable labels."""
    rng = np.random.default_rng(seed)
    n = batches * batch_size
    X = np.clip(rng.normal(0.3, 0.3, size=(n + 1024, 784)), 0, 1).astype("float32")
    teacher = rng.normal(size=(784, 10)).astype("float32")
    labels = np.argmax((X - 0.3) @ teacher, axis=1)
    Y = np.eye(10, dtype="float32")[labels]
    return (X[:n], Y[:n], labels[:n]), (X[n:], Y[n:], labels[n:])


def mlp_weights(seed=1):
    rng = np.random.default_rng(seed)
    weights = []
    for a, b in zip(MLP_SIZES[:-1], MLP_SIZES[1:]):
        weights.append((rng.normal(size=(a, b)) / np.sqrt(a)).astype("float32"))
        weights.append(np.zeros(b, "float32"))
    return weights


def mlp_order(count, seed=0):
    """The sample order of the first pass of
    ``downhill.Dataset(..., rng=seed, shuffle_samples=True)``."""
    return np.random.default_rng(seed).permutation(count)


def samples(fn, repeat, sample_seconds=0.01, sync=None):
    """Seconds per call of ``fn``: ``repeat`` samples of as many calls as fill
    ``sample_seconds``, each after one untimed call (which lets a library's
    worker threads wake up). ``sync()``, if given, waits for asynchronous work
    (JAX) before a sample's clock stops."""
    sync = sync or (lambda: None)
    fn()
    sync()
    t = time.perf_counter()
    fn()
    sync()
    number = max(1, min(10000, int(sample_seconds / max(time.perf_counter() - t, 1e-7))))
    out = []
    for _ in range(repeat):
        fn()
        sync()
        t = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        out.append((time.perf_counter() - t) / number)
    return out


def report(result):
    """Print a worker's result for the orchestrator."""
    print("RESULT " + json.dumps(result, default=lambda o: o.tolist()), flush=True)
