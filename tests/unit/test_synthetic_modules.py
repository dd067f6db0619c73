"""The sort and add control tasks: right answers, seeded, options checked."""

from __future__ import annotations

import pytest

from data_service.errors import DataError
from data_service.modules import discover
from data_service.modules.base import Report
from data_service.modules.synthetic import AddModule, SortModule


def pairs(module, **options: str):
    defaults = {o.name: o.default for o in module.options}
    return list(module.read(None, defaults | options, Report()))


def test_sort_pairs_are_sorted_digits():
    got = pairs(SortModule(), num_examples="50", length="5", num_digits="4")
    assert len(got) == 50
    for p in got:
        digits = p.prompt.removesuffix("=")
        assert len(digits) == 5 and set(digits) <= set("0123")
        assert p.completion == "".join(sorted(digits))


def test_add_pairs_are_sums_reversed_or_not():
    for p in pairs(AddModule(), num_examples="50", digits="3"):
        a, b = p.prompt.removesuffix("=").split("+")
        assert len(a) == len(b) == 3
        assert int(p.completion[::-1]) == int(a) + int(b) and len(p.completion) == 4
    for p in pairs(AddModule(), num_examples="20", reverse="false"):
        a, b = p.prompt.removesuffix("=").split("+")
        assert int(p.completion) == int(a) + int(b)


def test_seeded():
    assert pairs(SortModule()) == pairs(SortModule())
    assert pairs(SortModule(), seed="1") != pairs(SortModule())


def test_bad_options():
    with pytest.raises(DataError, match="option length must be an integer from 1 to 64, got '0'"):
        pairs(SortModule(), length="0")
    with pytest.raises(DataError, match="option reverse must be true or false, got 'maybe'"):
        pairs(AddModule(), reverse="maybe")
    with pytest.raises(DataError, match="option seed must be an integer"):
        pairs(AddModule(), seed="x")


def test_discovered_and_need_no_source():
    modules = discover()
    assert not modules["sort"].needs_source and not modules["add"].needs_source
