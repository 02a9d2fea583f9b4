"""The README's quick start: low-rank matrix factorization with RMSProp."""

import logging

import numpy as np
import pytensor
import pytensor.tensor as pt

import downhill


def main(max_updates=500):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rng = np.random.default_rng(0)
    A, B, K = 20, 30, 3
    y = (rng.normal(size=(A, K)) @ rng.normal(size=(K, B))).astype("float32")
    x = pt.matrix("x")
    u = pytensor.shared(rng.normal(size=(A, K)).astype("float32") * 0.1, name="u")
    v = pytensor.shared(rng.normal(size=(K, B)).astype("float32") * 0.1, name="v")
    loss = pt.sqr(x - u @ v).mean()
    train, valid = downhill.minimize(
        loss, train=[y], batch_size=0, learning_rate=0.01,
        monitors=[("u<0.1", (abs(u) < 0.1).mean())], max_updates=max_updates)
    print("final validation:", {k: round(val, 6) for k, val in valid.items()})
    return valid


if __name__ == "__main__":
    main()
