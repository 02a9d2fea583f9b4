"""A 0.4 client whose callable's batches hold arrays of different lengths: a
graph embedding trained with a histogram-style loss, each batch 20 anchor
nodes, a block of 96 adjacency rows and 20 negative nodes (the shape of a
real script that trained for hundreds of iterations on 0.4)."""

import numpy as np
import pytensor
import pytensor.tensor as TT

import downhill

rng = np.random.RandomState(3)
NODES, DIM = 96, 4
adjacency = (rng.rand(NODES, NODES) < 0.05).astype('f')
adjacency = np.maximum(adjacency, adjacency.T)

anchors = TT.ivector('anchors')
block = TT.matrix('block')
negatives = TT.ivector('negatives')
emb = pytensor.shared((0.1 * rng.randn(NODES, DIM)).astype('f'), name='emb')

# neighbours pull together, sampled non-neighbours push apart
smoothed = TT.dot(block, emb) / (block.sum(axis=1, keepdims=True) + 1)
pull = TT.sqr(emb[anchors] - smoothed[anchors]).sum(axis=1)
push = TT.maximum(0, 1 - TT.sqr(emb[anchors] - emb[negatives]).sum(axis=1))
loss = (pull + push).mean()


def batch():
    return [rng.randint(NODES, size=20).astype('int32'), adjacency,
            rng.randint(NODES, size=20).astype('int32')]


opt = downhill.build('rmsprop', loss=loss, inputs=[anchors, block, negatives])
before = opt.evaluate(downhill.Dataset(batch, iteration_size=20))['loss']
for train, valid in opt.iterate(batch, batch, learning_rate=0.01, max_updates=60,
                                patience=100, validate_every=10):
    pass
after = opt.evaluate(downhill.Dataset(batch, iteration_size=20))['loss']
print('loss', before, '->', after)
assert after < 0.7 * before, (before, after)
print('OK')
