"""How theanets (the best-known library built on downhill 0.4) drives
downhill: its own Datasets with a RandomState, build() with keywords, and its
own training keywords passed straight through iterate()."""

import numpy as np
import pytensor
import pytensor.tensor as TT

import downhill

rng = np.random.RandomState(13)
X = rng.randn(120, 4).astype('f')
Y = (np.dot(X, rng.randn(4, 2)) > 0).astype('f')

x = TT.matrix('x')
t = TT.matrix('t')
w = pytensor.shared((0.1 * rng.randn(4, 2)).astype('f'), name='w')
b = pytensor.shared(np.zeros(2, 'f'), name='b')
out = TT.nnet.sigmoid(TT.dot(x, w) + b) if hasattr(TT, 'nnet') else \
    1 / (1 + TT.exp(-(TT.dot(x, w) + b)))
err = TT.sqr(out - t).mean()
kwargs = dict(
    # theanets' own keywords, which it passes through to downhill
    rng=rng, weight_l2=1e-4, hidden_l1=0, input_noise=0, input_dropout=0,
    hidden_dropout=0, save_every=0, save_progress=None, monitor_gradients=False,
    train_batches=None, valid_batches=None,
    # downhill's
    batch_size=16, learning_rate=0.5, momentum=0.9, patience=3, min_improvement=0.001,
    validate_every=2, max_gradient_norm=10)

train = downhill.Dataset([X[:100], Y[:100]], name='train', batch_size=16,
                         iteration_size=None, axis=0, rng=kwargs['rng'])
valid = downhill.Dataset([X[100:], Y[100:]], name='valid', batch_size=16,
                         iteration_size=None, axis=0, rng=kwargs['rng'])
opt = downhill.build(
    algo='nag',
    loss=err + kwargs['weight_l2'] * (w * w).sum(),
    updates=(),
    monitors=[('err', err), ('acc', TT.eq(out > 0.5, t > 0.5).mean())],
    inputs=[x, t],
    params=[w, b],
    monitor_gradients=kwargs['monitor_gradients'])
first = None
for i, (tm, vm) in enumerate(opt.iterate(train, valid=valid, **kwargs)):
    first = first or tm
    if i >= 60:
        break
print('first', dict(first), 'last', dict(tm), 'valid', dict(vm))
assert tm['err'] < first['err']
print('OK')
