from __future__ import annotations

import pytest

from agent.diff import StreamingDiff, diff, row_key


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


# -- StreamingDiff: the same answer as diff(), fed row by row ---------------------------------


def _streaming(previous: list[dict], current: list[dict]) -> tuple[list[dict], list[dict]]:
    """diff() computed by StreamingDiff from a stored form of ``previous`` (tuples, odd rows as maps)."""
    columns = tuple(current[0]) if current else tuple(previous[0]) if previous else ()
    stored_columns = tuple(previous[0]) if previous else ()
    stored = [tuple(r.values()) if tuple(r) == stored_columns else dict(r) for r in previous]
    differ = StreamingDiff(columns, stored_columns, lambda: iter(stored))
    added = [r for r in current if differ.feed(tuple(r[c] for c in columns))]
    changed = differ.changed
    removed = [dict(zip(cols, values, strict=True)) for cols, values in differ.removed()]
    assert changed == bool(added or removed)
    return added, removed


def test_streaming_diff_equals_diff_on_random_multisets():
    import random

    rng = random.Random(7)
    for _ in range(200):
        pool = [r(pid=rng.randrange(6), name=rng.choice("ab")) for _ in range(12)]
        previous = [rng.choice(pool) for _ in range(rng.randrange(0, 10))]
        current = [rng.choice(pool) for _ in range(rng.randrange(0, 10))]
        assert _streaming(previous, current) == diff(previous, current), (previous, current)


def test_streaming_diff_matches_reordered_columns_and_never_other_columns():
    assert _streaming([{"a": "1", "b": "2"}], [{"b": "2", "a": "1"}, {"b": "3", "a": "1"}]) == (
        [{"b": "3", "a": "1"}],
        [],
    )
    assert _streaming([{"a": "1"}], [{"a": "1", "b": ""}]) == ([{"a": "1", "b": ""}], [{"a": "1"}])
    odd = [{"a": "1", "b": "2"}, {"b": "9", "a": "8"}, {"x": "1"}]  # stored: a tuple, then maps
    assert _streaming(odd, [{"a": "8", "b": "9"}]) == ([], [{"a": "1", "b": "2"}, {"x": "1"}])


def test_streaming_diff_holds_keys_not_rows_and_reads_previous_twice_only_on_change():
    reads = []

    def previous():
        reads.append(1)
        return iter([("1", "a"), ("2", "b")])

    differ = StreamingDiff(("pid", "name"), ("pid", "name"), previous)
    assert not differ.feed(("2", "b")) and not differ.feed(("1", "a")) and not differ.changed
    assert list(differ.removed()) == [] and len(reads) == 1


def _text(value):
    """As the result log prints a value (agent.results.stringify, which the runner passes)."""
    from agent.results import stringify

    return stringify(value)


def test_streaming_diff_with_text_compares_rows_as_osquery_prints_them():
    """Typed first; rows without a typed twin by their text: stored text or a moved type is no change."""
    stored = [("1", "a"), (2, None), (3, "c"), (4, 1.0)]  # an older agentd stored text; a newer one typed values
    differ = StreamingDiff(("id", "name"), ("id", "name"), lambda: iter(stored), text=_text)
    fed = [(1, "a"), ("2", ""), (5, "e"), ("4", "1.0")]
    assert [differ.feed(v) for v in fed] == [False, False, True, False]
    assert list(differ.removed()) == [(("id", "name"), (3, "c"))], "removed rows come as they were stored"
    exact = StreamingDiff(("id",), ("id",), lambda: iter([("1",)]))
    assert exact.feed((1,)) and exact.changed, "without text, 1 and '1' differ"


def test_int_and_float_that_python_finds_equal_print_differently():
    differ = StreamingDiff(("n",), ("n",), lambda: iter([(1,), (2.0,), (3.5,)]), text=_text)
    assert [differ.feed(v) for v in [(1.0,), (2.0,), (3.5,)]] == [True, False, False]
    assert list(differ.removed()) == [(("n",), (1,))]


@pytest.mark.parametrize("way", ["feed", "push", "push, holding 2"])
def test_streaming_diff_with_text_equals_diff_of_the_printed_rows_on_random_multisets(way, monkeypatch):
    """feed(), and push() that holds rows without a typed twin (few, or more than it may hold): osquery's answer."""
    import random

    import agent.diff

    if way == "push, holding 2":
        monkeypatch.setattr(agent.diff, "HOLD_ROWS", 2)
    rng = random.Random(11)
    pool = [1, "1", 1.0, "1.0", None, "", 2, "2", b"2", "x"]
    for _ in range(500):
        previous = [(rng.choice(pool), rng.choice(pool)) for _ in range(rng.randrange(0, 8))]
        current = [(rng.choice(pool), rng.choice(pool)) for _ in range(rng.randrange(0, 8))]
        differ = StreamingDiff(("a", "b"), ("a", "b"), lambda p=previous: iter(p), text=_text)
        if way == "feed":
            added = [c for c in current if differ.feed(c)]
        else:
            items = [item for n, c in enumerate(current) for item in differ.push(c, n)]
            items += differ.finish()
            assert items == sorted(items), "added rows come in the order they were pushed"
            added = [current[n] for n in items]
        assert differ.added == len(added)
        changed = differ.changed  # before removed() reads the previous rows left
        removed = [values for _columns, values in differ.removed()]

        def printed(rows):
            return [{"a": _text(a), "b": _text(b)} for a, b in rows]

        want_added, want_removed = diff(printed(previous), printed(current))
        assert sorted(map(str, printed(added))) == sorted(map(str, want_added)), (previous, current)
        assert sorted(map(str, printed(removed))) == sorted(map(str, want_removed)), (previous, current)
        assert changed == bool(want_added or want_removed)
