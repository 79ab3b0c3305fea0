from __future__ import annotations

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


def test_streaming_diff_with_a_key_compares_what_the_key_gives():
    """The runner's key: values as the result log prints them (osquery compares text), stored text or typed."""

    def text(values):
        return tuple("" if v is None else str(v) for v in values)

    stored = [("1", "a"), (2, None), (3, "c")]  # an older agentd stored text; a newer one typed values
    differ = StreamingDiff(("id", "name"), ("id", "name"), lambda: iter(stored), key=text)
    fed = [(1, "a"), ("2", ""), (4, "d")]
    assert [differ.feed(v) for v in fed] == [False, False, True]
    assert list(differ.removed()) == [(("id", "name"), (3, "c"))], "removed rows come as they were stored"
    exact = StreamingDiff(("id",), ("id",), lambda: iter([("1",)]))
    assert exact.feed((1,)) and exact.changed, "without a key, 1 and '1' differ"
