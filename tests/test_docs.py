"""The user guide's code runs as written, in order."""

import pathlib
import re

import numpy as np

import downhill

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_guide_python_blocks_run(tmp_path):
    text = (ROOT / "docs" / "guide.rst").read_text()
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text)
    assert len(blocks) == 10
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


def _documented(api):
    """Names the API page documents: directive targets and their :members:."""
    names = set()
    for target, members in re.findall(
            r"\.\. auto\w+:: (\S+)\n((?:   :\w[\w-]*:.*\n(?:             .*\n)*)*)", api):
        names.add(target)
        listed = re.search(r":members: ((?:.*\n)(?:             .*\n)*)", members)
        if listed:
            names.update(f"{target}.{m.strip()}" for m in listed.group(1).split(",")
                         if m.strip())
    return names


def test_guide_cross_references_point_at_documented_objects():
    # Sphinx -W does not report a :meth: or :class: whose target is not
    # documented: it renders as plain text. Every one the guide uses must be
    # on the API page.
    api = (ROOT / "docs" / "api.rst").read_text()
    documented = _documented(api)
    # docs/conf.py writes a page per registered algorithm, its class documented there
    documented.update(f"downhill.{cls.__name__}" for cls in downhill.ALGORITHMS.values())
    guide = (ROOT / "docs" / "guide.rst").read_text()
    targets = re.findall(r":(?:meth|class|mod|func|data|attr):`~?(downhill[\w.]*)`", guide)
    assert len(targets) > 10
    missing = sorted({t for t in targets if t not in documented})
    assert not missing, f"not on the API page: {missing}"
