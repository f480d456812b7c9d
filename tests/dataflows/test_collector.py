"""The garbage collector's policy of a dataflow process (dataflows/collector.py)."""

from __future__ import annotations

import gc

import pytest

from dataflows.collector import PYTHON_DEFAULT, tune_collector
from worktool.settings import Settings


@pytest.fixture
def thresholds():
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_the_young_threshold_comes_from_the_settings(thresholds, monkeypatch):
    monkeypatch.delenv("WORKTOOL_GC_THRESHOLD", raising=False)
    assert tune_collector(Settings().gc_threshold)[0] == 50_000
    monkeypatch.setenv("WORKTOOL_GC_THRESHOLD", "0")
    assert tune_collector(Settings().gc_threshold)[0] == PYTHON_DEFAULT  # 0: Python's own
    older = gc.get_threshold()[1:]
    assert tune_collector(12_345) == (12_345, *older)  # the older generations are left alone


def test_a_negative_threshold_is_refused(monkeypatch):
    monkeypatch.setenv("WORKTOOL_GC_THRESHOLD", "-1")
    with pytest.raises(ValueError, match="WORKTOOL_GC_THRESHOLD"):
        Settings()
