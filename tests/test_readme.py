"""The README's code runs as written."""

import pathlib
import re

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "README.rst").read_text()
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text)
    assert len(blocks) == 4
    namespace = {}
    for block in blocks:
        code = "\n".join(line[3:] for line in block.splitlines())
        exec(compile(code, "README.rst", "exec"), namespace)
    assert namespace["valid"]["loss"] < 0.05
    assert np.isfinite(namespace["u"].get_value()).all()
    assert (tmp_path / "run.npz").exists()
    # the long run completes its schedule: early stopping does not cut it short
    assert namespace["opt"].state_dict()["counters"]["iteration"] == 300


def test_readme_is_valid_restructuredtext():
    import docutils.core
    import docutils.utils

    text = (ROOT / "README.rst").read_text()
    # any warning (a broken heading, a bad directive) raises
    docutils.core.publish_doctree(
        text, settings_overrides={"halt_level": docutils.utils.Reporter.WARNING_LEVEL,
                                  "report_level": docutils.utils.Reporter.WARNING_LEVEL})


def test_ci_runs_the_readmes_set_up_commands_as_written():
    # .ci/run reads each command from the line after its comment in the README's
    # first code block and runs it verbatim: the two cannot drift apart
    text = (ROOT / "README.rst").read_text()
    first = re.search(r"\.\. code-block:: bash\n\n((?:   .*\n|\n)+)", text).group(1)
    lines = [line.strip() for line in first.splitlines() if line.strip()]
    comments = [line[2:] for line in lines if line.startswith("# ")]
    assert len(comments) == 2 and "demo" in comments[0] and "tests" in comments[1]
    commands = [lines[lines.index("# " + c) + 1] for c in comments]
    assert commands[1] == ("python3 -m venv .venv && .venv/bin/pip install -e '.[test]' "
                           "&& .venv/bin/python -m pytest -q")
    assert commands[0].endswith(".venv/bin/downhill demo")
    ci = (ROOT / ".ci" / "run").read_text()
    for comment in comments:
        assert f'"{comment}"' in ci, comment
    assert 'bash -c "$command"' in ci
