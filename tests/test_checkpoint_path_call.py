import numpy as np, pytensor, pytest, downhill, os
def _opt():
    w = pytensor.shared(np.zeros(2), name="w")
    return downhill.build("sgd", ((w - 1) ** 2).sum())
@pytest.mark.parametrize("bad", [5, "/nonexistent-folder/run.npz", "/tmp"])
def test_unusable_checkpoint_refused_at_call(bad):
    opt = _opt()
    with pytest.raises(ValueError, match="invalid checkpoint"):
        opt.iterate(None, max_updates=2, checkpoint=bad)
    assert opt._run.iteration == 0
