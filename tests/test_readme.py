"""The README's code runs, and its Quickstart matches .ci/run."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_python_blocks_run(capsys):
    """Every ```python block in the README runs and prints what its comments say."""
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
    assert "COMPLETED (10, [0, 1, 4, 9])" in capsys.readouterr().out


def test_quickstart_is_two_commands_and_ci_runs_the_second():
    """The Quickstart has exactly two commands; .ci/run calls the test one."""
    quick = re.search(r"## Quickstart\n\n```bash\n(.*?)```", README, re.S).group(1)
    commands = quick.strip().splitlines()
    assert len(commands) == 2
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
