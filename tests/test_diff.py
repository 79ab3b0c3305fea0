from __future__ import annotations

from agent.diff import diff, row_key


def r(**kw):
    return {k: str(v) for k, v in kw.items()}


def test_added_and_removed_rows():
    prev = [r(pid=1, name="a"), r(pid=2, name="b")]
    cur = [r(pid=2, name="b"), r(pid=3, name="c")]
    assert diff(prev, cur) == ([r(pid=3, name="c")], [r(pid=1, name="a")])


def test_no_change_and_reordering_is_no_change():
    prev = [r(pid=1, name="a"), r(pid=2, name="b")]
    assert diff(prev, list(prev)) == ([], [])
    assert diff(prev, list(reversed(prev))) == ([], [])


def test_a_changed_column_is_one_removed_and_one_added():
    assert diff([r(pid=1, state="S")], [r(pid=1, state="R")]) == ([r(pid=1, state="R")], [r(pid=1, state="S")])


def test_duplicates_are_a_multiset():
    a = r(port=80)
    assert diff([a, a], [a]) == ([], [a])
    assert diff([a], [a, a, a]) == ([a, a], [])
    assert diff([a, a], [a, a]) == ([], [])


def test_rows_compare_as_maps_whatever_the_column_order():
    assert diff([{"a": "1", "b": "2"}], [{"b": "2", "a": "1"}, {"a": "1", "b": "3"}]) == ([{"a": "1", "b": "3"}], [])
    assert row_key({"a": "1", "b": "2"}, ("a", "b")) == row_key({"b": "2", "a": "1"}, ("a", "b"))


def test_rows_with_other_columns_never_match():
    assert diff([{"a": "1"}], [{"a": "1", "b": ""}]) == ([{"a": "1", "b": ""}], [{"a": "1"}])


def test_empty_sides():
    rows = [r(x=1)]
    assert diff([], rows) == (rows, [])
    assert diff(rows, []) == ([], rows)
    assert diff([], []) == ([], [])


def test_large_diff_is_exact():
    prev = [r(i=i, v=i % 7) for i in range(20000)]
    cur = prev[100:] + [r(i=i, v=0) for i in range(20000, 20050)]
    added, removed = diff(prev, cur)
    assert removed == prev[:100]
    assert added == cur[-50:]


def test_non_dict_mappings_diff_like_dicts():
    from types import MappingProxyType

    prev = [MappingProxyType({"a": "1"}), MappingProxyType({"a": "2"})]
    added, removed = diff(prev, [{"a": "2"}, {"a": "3"}])
    assert added == [{"a": "3"}] and removed == [prev[0]]
