"""A new algorithm the downhill 0.4 way: a subclass implementing
_get_updates_for(param, grad), found by build() under its lower-cased name,
with its hyperparameters read as attributes (0.4's opt.learning_rate.eval())."""

import numpy as np
import pytensor
import pytensor.tensor as TT

import downhill
from downhill.util import as_float, shared_like


class Straight(downhill.Optimizer):
    """Plain SGD, as 0.4's downhill.SGD was written."""

    def _get_updates_for(self, param, grad):
        yield param, self.learning_rate * grad


class Averaged(downhill.Optimizer):
    """SGD on an exponential average of the gradient (state made by the algorithm)."""

    def _get_updates_for(self, param, grad):
        avg_tm1 = shared_like(param, 'avg')
        avg_t = as_float(0.9) * avg_tm1 + as_float(0.1) * grad
        yield avg_tm1, avg_t
        yield param, self.learning_rate * avg_t


rng = np.random.RandomState(3)
X = rng.randn(200, 3).astype('f')
Y = np.dot(X, np.array([1, -2, 0.5], 'f')).astype('f')
x = TT.matrix('x')
y = TT.vector('y')
for algo in ('straight', 'Averaged'):
    w = pytensor.shared(np.zeros(3, 'f'), name='w')
    opt = downhill.build(algo, loss=TT.sqr(TT.dot(x, w) - y).mean(), inputs=[x, y])
    for tm, vm in opt.iterate([X, Y], learning_rate=0.05, momentum=0.5, patience=2,
                              max_updates=100, batch_size=20):
        pass
    print(algo, 'learning rate', opt.learning_rate.eval(), 'momentum', opt.momentum,
          'loss', vm['loss'], 'w', w.get_value())
    assert np.allclose(opt.learning_rate.eval(), 0.05)
    assert opt.momentum == 0.5 and opt.nesterov is False and opt.patience == 2
    assert vm['loss'] < 1e-3, vm
    opt.learning_rate.set_value(0.01)
    assert np.allclose(opt.learning_rate.eval(), 0.01)
print([v.name for v in opt.state_variables])
assert 'w_avg' in [v.name for v in opt.state_variables]
print('OK')
