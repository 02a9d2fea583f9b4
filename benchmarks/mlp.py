"""The MLP of the end-to-end and start-up benchmarks (numpy, PyTensor, downhill only)."""

import numpy as np
import pytensor
import pytensor.tensor as pt

import downhill

MLP_SIZES = (784, 256, 256, 10)


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


def downhill_mlp(weights, mode=None, tanh=pt.tanh):
    x = pt.matrix("x", dtype="float32")
    y = pt.matrix("y", dtype="float32")
    shared = [pytensor.shared(w.copy(), name=f"{'wb'[i % 2]}{i // 2 + 1}")
              for i, w in enumerate(weights)]
    h = x
    for i in range(0, len(shared), 2):
        h = h @ shared[i] + shared[i + 1]
        if i + 2 < len(shared):
            h = tanh(h)
    logp = pt.special.log_softmax(h, axis=1)
    loss = -(y * logp).sum(axis=1).mean()
    opt = downhill.build("rmsprop", loss, inputs=[x, y], mode=mode)
    return opt, shared


def sigmoid_tanh(x):
    """tanh written as 2 sigmoid(2x) - 1: the same function (within 1e-7 in
    float32), which PyTensor's Numba backend runs about 3.5x faster than its
    scalar tanh."""
    return 2 * pt.sigmoid(2 * x) - 1
