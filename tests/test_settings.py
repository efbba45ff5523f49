"""Settings from the environment: no Ray needed."""

import pytest

from qflow.exceptions import QflowConfigError
from qflow.settings import Settings, parse_flag


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, True),
        ("", True),
        ("1", True),
        ("yes", True),
        (" TRUE ", True),
        ("0", False),
        ("off", False),
        ("False", False),
    ],
)
def test_flags_read_the_usual_spellings(text, expected):
    assert parse_flag(text, "QFLOW_X", default=True) is expected


def test_a_flag_that_is_neither_on_nor_off_is_refused_with_the_valid_spellings():
    with pytest.raises(QflowConfigError, match=r"QFLOW_FREEZE_GC is one of 1, true.*got 'maybe'"):
        parse_flag("maybe", "QFLOW_FREEZE_GC", default=True)


def test_freeze_gc_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("QFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("QFLOW_FREEZE_GC", raising=False)
    assert Settings.from_env().freeze_gc is True
    monkeypatch.setenv("QFLOW_FREEZE_GC", "0")
    assert Settings.from_env().freeze_gc is False


def test_freeze_gc_must_be_a_bool(tmp_path):
    with pytest.raises(QflowConfigError, match="freeze_gc is True or False; got 'no'"):
        Settings(home=tmp_path, freeze_gc="no")
