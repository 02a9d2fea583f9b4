"""The pattern of downhill 0.4's examples: every algorithm run with every
algorithm's keywords (examples/rosenbrock.py), a loss without inputs fed
[[]], and minimize() given bare arrays with 0.4's gradient-clip synonym
(examples/mnist-sparse-factorization.py)."""

import numpy as np
import pytensor
import pytensor.tensor as TT

import downhill

np.random.seed(1)


def build(algo):
    x = pytensor.shared(np.array([-1.1, 0], 'f'), name='x')
    return downhill.build(
        algo,
        loss=(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum(),
        params=[x],
        inputs=[],
        monitors=[('x', x[:-1].sum()), ('y', x[1:].sum())],
        monitor_gradients=True)


def build_and_trace(algo, limit=20, **kwargs):
    # the one change from 0.4's example (see the README's porting notes): a
    # diverging run stops instead of raising FloatingPointError
    kw = dict(min_improvement=0, patience=100, on_nonfinite='stop')
    kw.update(kwargs)
    xs, ys, loss = [], [], []
    for tm, _ in build(algo).iterate([[]], **kw):
        xs.append(tm['x'])
        ys.append(tm['y'])
        loss.append(tm['loss'])
        if len(xs) == limit:
            break
    return xs, ys, loss


results = {}
for algo in 'SGD NAG RMSProp RProp Adam ADADELTA ESGD'.split():
    for _ in range(1):
        mu = max(0, np.random.uniform(0, 1.2) - 0.2)
        rate = np.exp(np.random.uniform(-8, -2))
        half = int(np.exp(np.random.uniform(0, 4)))
        reg = np.exp(np.random.uniform(-12, 0))
        results[(algo, rate, mu, half, reg)] = build_and_trace(
            algo, momentum=mu, learning_rate=rate, rms_halflife=half,
            rms_regularizer=reg)
for key, (xs, ys, loss) in sorted(results.items()):
    print(key[0], len(loss), loss[-1])
    assert 1 <= len(loss) <= 20 and np.isfinite(loss).all()

# examples/mnist-sparse-factorization.py, on small random "images"
train = np.random.randn(64, 16).astype('f')
valid = np.random.randn(16, 16).astype('f')
N, K, B = 4, 3, 16
x = TT.matrix('x')
u = pytensor.shared(np.random.randn(N * N, K * K).astype('f'), name='u')
v = pytensor.shared(np.random.randn(K * K, B).astype('f'), name='v')
err = TT.sqr(x - TT.dot(u, v)).mean()
tm, vm = downhill.minimize(
    loss=err + 100 * (0.01 * abs(u).mean() + (v * v).mean()),
    params=[u, v],
    inputs=[x],
    train=train,
    valid=valid,
    batch_size=N * N,
    monitor_gradients=True,
    monitors=[('err', err), ('u<0.1', (u < 0.1).mean())],
    algo='sgd',
    max_gradient_clip=1,
    learning_rate=0.5,
    momentum=0.9,
    patience=3,
    min_improvement=0.1,
    max_updates=30,
)
print('factorization', dict(vm))
assert np.isfinite(vm['loss'])
print('OK')
