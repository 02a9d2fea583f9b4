"""The user guide's code runs as written, in order."""

import pathlib
import re

import numpy as np

import downhill

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_guide_python_blocks_run(tmp_path):
    text = (ROOT / "docs" / "guide.rst").read_text()
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text)
    assert len(blocks) == 8
    namespace = {"checkpoint_file": str(tmp_path / "run.npz")}
    for block in blocks:
        code = "\n".join(line[3:] for line in block.splitlines())
        exec(compile(code, "docs/guide.rst", "exec"), namespace)
    opt, w = namespace["opt"], namespace["w"]
    assert opt.params == [w] and [v.name for v in opt.inputs] == ["x", "y"]
    assert isinstance(opt, downhill.RMSProp)
    # after two stages the regression is solved: w is close to the true weights
    np.testing.assert_allclose(w.get_value(), [1.0, -2.0, 0.5], atol=0.05)
    assert {"w_g1_ewma", "w_g2_ewma"} <= {v.name for v in opt.state_variables}
    assert (tmp_path / "run.npz").exists()
