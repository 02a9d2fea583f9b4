"""The MLP of the end-to-end and start-up benchmarks in downhill (its data and
weights come from common.py, which torch_peer.py shares)."""

import pytensor
import pytensor.tensor as pt

import downhill

from common import MLP_SIZES, mlp_data, mlp_weights  # noqa: F401 (numpy only: shared with torch)


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
