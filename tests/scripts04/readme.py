"""The three snippets of downhill 0.4's README, with only the rename
(theano -> pytensor, theano.tensor -> pytensor.tensor), made CI-sized: a
fixed seed, and max_updates where 0.4's ran to early stopping."""

import numpy as np
import pytensor
import pytensor.tensor as TT

import downhill

np.random.seed(0)
FLOAT = 'df'[pytensor.config.floatX == 'float32']


def rand(a, b):
    return np.random.randn(a, b).astype(FLOAT)


A, B, K = 20, 5, 3

# Set up a matrix factorization problem to optimize.
u = pytensor.shared(rand(A, K), name='u')
v = pytensor.shared(rand(K, B), name='v')
z = TT.matrix()
err = TT.sqr(z - TT.dot(u, v))
loss = err.mean() + abs(u).mean() + (v * v).mean()

# Minimize the regularized loss with respect to a data matrix.
y = np.dot(rand(A, K), rand(K, B)) + rand(A, B)

# Monitor during optimization.
monitors = (('err', err.mean()),
            ('|u|<0.1', (abs(u) < 0.1).mean()),
            ('|v|<0.1', (abs(v) < 0.1).mean()))

downhill.minimize(
    loss=loss,
    train=[y],
    patience=0,
    batch_size=A,                 # Process y as a single batch.
    max_gradient_norm=1,          # Prevent gradient explosion!
    learning_rate=0.1,
    monitors=monitors,
    monitor_gradients=True,
    max_updates=50)

# Print out the optimized coefficients u and basis v.
print('u =', u.get_value())
print('v =', v.get_value())

opt = downhill.build(algo='rmsprop',
                     loss=loss,
                     monitors=monitors,
                     monitor_gradients=True)

for metrics, _ in opt.iterate(train=[[y]],
                              patience=0,
                              batch_size=A,
                              max_gradient_norm=1,
                              learning_rate=0.1,
                              max_updates=50):
    print(metrics)

updates = downhill.build('rmsprop', loss).get_updates(
    batch_size=A, max_gradient_norm=1, learning_rate=0.1)
func = pytensor.function([z], loss, updates=list(updates))
losses = [float(func(y)) for _ in range(100)]  # Evaluate func and apply variable updates.
print(losses[0], losses[-1])
assert losses[-1] < losses[0]
print('OK')
