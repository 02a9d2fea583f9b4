"""The data forms of downhill 0.4's guide ("Providing Data"): an array from
np.load, the same memory-mapped, a callable returning a bare array, a
loader class, a Dataset of one callable, and a list of batches to iterate."""

import os
import sys
import tempfile

import numpy as np
import pytensor
import pytensor.tensor as TT

import downhill

folder = tempfile.mkdtemp()
SOURCES = []
for k, name in enumerate(('foo.npy', 'bar.npy', 'baz.npy')):
    path = os.path.join(folder, name)
    np.save(path, (np.random.RandomState(k).randn(256, 2) + [3, -1]).astype('f'))
    SOURCES.append(path)
BATCH_SIZE = 64

x = TT.matrix('x')
mean = pytensor.shared(np.zeros(2, 'f'), name='mean')
loss = TT.sqr(x - mean).sum(axis=1).mean()
kw = dict(learning_rate=0.1, max_updates=10, patience=5, algo='sgd')

# Using arrays
dataset = np.load(SOURCES[0])
downhill.minimize(loss, train=dataset, **kw)
dataset = np.load(SOURCES[0], mmap_mode='r')
downhill.minimize(loss, train=dataset, **kw)
for filename in SOURCES:
    dataset = np.load(filename, mmap_mode='r')
    downhill.minimize(loss, train=dataset, **kw)
print('mean after arrays', mean.get_value())
assert np.allclose(mean.get_value(), [3, -1], atol=0.3)


# Using callables
def batch():
    X = np.load(SOURCES[np.random.randint(len(SOURCES))], mmap_mode='r')
    i = np.random.randint(len(X) - BATCH_SIZE)
    return X[i:i + BATCH_SIZE]


mean.set_value(np.zeros(2, 'f'))
downhill.minimize(loss, train=batch, **kw)


class Loader:
    def __init__(self, sources=SOURCES, batch_size=64):
        self.sources = sources
        self.batch_size = batch_size
        self.src = -1
        self.idx = 0
        self.X = ()

    def __call__(self):
        if self.idx + self.batch_size > len(self.X):
            self.idx = 0
            self.src = (self.src + 1) % len(self.sources)
            self.X = np.load(self.sources[self.src], mmap_mode='r')
        try:
            return self.X[self.idx:self.idx + self.batch_size]
        finally:
            self.idx += self.batch_size


downhill.minimize(loss, train=Loader(), **kw)
print('mean after callables', mean.get_value())
assert np.allclose(mean.get_value(), [3, -1], atol=0.3)

# a Dataset of a callable gives what the callable returns
ds = downhill.Dataset(Loader(), iteration_size=3)
assert ds.name.startswith('dataset') and ds.batch_size == 32
assert all(b.shape == (64, 2) for b in ds)

# a list of batches, and a generator, to iterate
X = np.load(SOURCES[1])
opt = downhill.build('sgd', loss)
batches = [[X[i:i + 64]] for i in range(0, len(X), 64)]
for tm, vm in opt.iterate(batches, learning_rate=0.1, max_updates=5):
    pass
stream = ([X[i:i + 32]] for i in range(0, len(X), 32))
passes = list(opt.iterate(stream, valid=batches, learning_rate=0.1, validate_every=1))
print('evaluate', dict(opt.evaluate(batches)), 'iterations', len(passes))
assert len(passes) == 1  # the generator's 8 batches made one iteration, then it ended
print('OK')
sys.exit(0)
