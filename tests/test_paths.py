"""tables._paths: osquery's % / %% file patterns, parsed (pure) and expanded on a real tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from tables._paths import compile_pattern, expand, split_path


def test_compile_pattern_components() -> None:
    p = compile_pattern("/etc/%.conf")
    assert p.absolute and not p.recursive
    assert p.parts[0] == "etc"
    assert p.parts[1].fullmatch("resolv.conf") and not p.parts[1].fullmatch("resolv.confx")
    # literal characters stay literal, glob and regex specials included
    q = compile_pattern("/a_b/[x]%")
    assert q.parts[0] == "a_b"
    assert q.parts[1].fullmatch("[x]yz") and not q.parts[1].fullmatch("xyz")


def test_compile_pattern_recursion_only_at_the_end() -> None:
    assert compile_pattern("/etc/%%").recursive
    assert compile_pattern("/etc/%%/").recursive
    mid = compile_pattern("/home/%%/.ssh")
    assert not mid.recursive  # osquery: %% in the middle acts as %
    assert mid.parts[1].fullmatch("alice") and not mid.parts[1].fullmatch("a/b")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/etc/passwd", ("/etc", "passwd")),
        ("/etc/ssl/", ("/etc/ssl", ".")),
        ("/", ("", "/")),
        ("/etc", ("/", "etc")),
    ],
)
def test_split_path_like_osquery(path: str, expected: tuple[str, str]) -> None:
    assert split_path(path) == expected


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "a" / "deep" / "deeper").mkdir(parents=True)
    (tmp_path / "a" / "one.txt").write_text("1")
    (tmp_path / "a" / "deep" / "two.txt").write_text("2")
    (tmp_path / "a" / "deep" / "deeper" / "three.txt").write_text("3")
    (tmp_path / "a" / ".hidden").write_text("h")
    (tmp_path / "b.conf").write_text("b")
    (tmp_path / "loop").symlink_to(tmp_path)  # a cycle: must not be descended into
    return tmp_path


def test_one_level(tree: Path) -> None:
    t = str(tree)
    assert sorted(expand(f"{t}/%")) == [f"{t}/a/", f"{t}/b.conf", f"{t}/loop/"]
    assert sorted(expand(f"{t}/a/%")) == [f"{t}/a/deep/", f"{t}/a/one.txt"]  # no .hidden
    assert sorted(expand(f"{t}/a/.%")) == [f"{t}/a/.hidden"]
    assert list(expand(f"{t}/%.conf")) == [f"{t}/b.conf"]
    assert list(expand(f"{t}/%/one.txt")) == [f"{t}/a/one.txt"]


def test_recursive(tree: Path) -> None:
    t = str(tree)
    found = sorted(expand(f"{t}/a/%%"))
    assert found == [
        f"{t}/a/deep/",
        f"{t}/a/deep/deeper/",
        f"{t}/a/deep/deeper/three.txt",
        f"{t}/a/deep/two.txt",
        f"{t}/a/one.txt",
    ]
    assert sorted(expand(f"{t}/a/%%", folders=False)) == [
        f"{t}/a/deep/deeper/three.txt",
        f"{t}/a/deep/two.txt",
        f"{t}/a/one.txt",
    ]
    assert sorted(expand(f"{t}/a/%%", files=False)) == [f"{t}/a/deep/", f"{t}/a/deep/deeper/"]
    # the symlink cycle is reported but not followed
    whole = list(expand(f"{t}/%%"))
    assert f"{t}/loop/" in whole and not any(p.startswith(f"{t}/loop/") and p != f"{t}/loop/" for p in whole)


def test_depth_is_bounded(tree: Path) -> None:
    t = str(tree)
    assert sorted(expand(f"{t}/a/%%", max_depth=1)) == [f"{t}/a/deep/", f"{t}/a/one.txt"]


def test_no_match_and_missing_base(tree: Path) -> None:
    assert list(expand(f"{tree}/nothing/%")) == []
    assert list(expand(f"{tree}/%.none")) == []


def test_check_is_called(tree: Path) -> None:
    calls = []
    list(expand(f"{tree}/%%", check=lambda: calls.append(1)))
    assert calls
