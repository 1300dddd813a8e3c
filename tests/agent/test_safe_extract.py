"""safe_extract on crafted archives, as a hostile sandbox would build them (issue 9, point 3)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from sandboxctl.services.safe_extract import OVER_TOTAL, TOO_LARGE, UnsafeArchive, extract


def member(name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def archive(*members: tuple) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    buffer.seek(0)
    return buffer


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A directory outside the tree, standing for any host directory, with a file the attacker wants."""
    path = tmp_path / "host"
    path.mkdir()
    (path / "victim").write_text("host secret\n")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    path = tmp_path / "tree"
    path.mkdir()
    return path


def test_write_through_symlink_then_hardlink_then_regular(tree: Path, host: Path) -> None:
    report = extract(
        archive(
            member("ws/x", kind=tarfile.SYMTYPE, link=str(host)),
            member("ws/y", kind=tarfile.LNKTYPE, link="ws/x/victim"),
            member("ws/y", b"overwritten\n"),
            member("ws/x/victim", b"through the link\n"),
        ),
        tree,
        strip_components=1,
    )
    assert (host / "victim").read_text() == "host secret\n"
    assert os.readlink(tree / "x") == str(host)  # the link stays a link, never followed
    assert (tree / "y").read_text() == "overwritten\n" and (tree / "y").stat().st_nlink == 1
    reasons = {item.path: item.reason for item in report.skipped}
    assert reasons["y"].startswith("hardlink") and reasons["x/victim"] == "path through a link or a file"


def test_hardlink_cannot_read_a_host_file_into_the_tree(tree: Path, host: Path) -> None:
    report = extract(
        archive(
            member("ws/abs", kind=tarfile.LNKTYPE, link=str(host / "victim")),
            member("ws/rel", kind=tarfile.LNKTYPE, link="../host/victim"),
            member("ws/link", kind=tarfile.SYMTYPE, link=str(host)),
            member("ws/via-link", kind=tarfile.LNKTYPE, link="ws/link/victim"),
        ),
        tree,
        strip_components=1,
    )
    assert sorted(p.name for p in tree.iterdir()) == ["link"]
    assert {item.path for item in report.skipped} == {"abs", "rel", "via-link"}
    for path in tree.rglob("*"):
        assert path.is_symlink() or b"host secret" not in path.read_bytes()


def test_hardlink_to_a_file_already_extracted_is_a_copy(tree: Path) -> None:
    extract(
        archive(member("ws/a", b"data\n"), member("ws/b", kind=tarfile.LNKTYPE, link="ws/a"), member("ws/a", b"new\n")),
        tree,
        strip_components=1,
    )
    assert (tree / "a").read_text() == "new\n" and (tree / "b").read_text() == "data\n"


def test_absolute_and_parent_names_are_refused(tree: Path, tmp_path: Path) -> None:
    escape = tmp_path / "escaped"
    report = extract(
        archive(
            member(str(escape), b"abs\n"),
            member("ws/../../escaped", b"dotdot\n"),
            member("ws/ok/../../../escaped2", b"dotdot\n"),
            member("ws/fine.txt", b"fine\n"),
        ),
        tree,
        strip_components=1,
    )
    assert not escape.exists() and not (tmp_path / "escaped2").exists()
    assert [p.name for p in tree.iterdir()] == ["fine.txt"]
    assert all(item.reason == "absolute or parent path" for item in report.skipped) and len(report.skipped) == 3


def test_duplicates_never_write_through_an_earlier_symlink(tree: Path, host: Path) -> None:
    extract(
        archive(
            member("ws/f", kind=tarfile.SYMTYPE, link=str(host / "victim")),
            member("ws/f", b"replaced\n"),
            member("ws/d", kind=tarfile.SYMTYPE, link=str(host)),
            member("ws/d", kind=tarfile.DIRTYPE),
            member("ws/d/victim", b"in a real dir\n"),
        ),
        tree,
        strip_components=1,
    )
    assert (host / "victim").read_text() == "host secret\n" and sorted(os.listdir(host)) == ["victim"]
    assert not (tree / "f").is_symlink() and (tree / "f").read_text() == "replaced\n"
    assert not (tree / "d").is_symlink() and (tree / "d" / "victim").read_text() == "in a real dir\n"


def test_a_directory_symlinked_inside_the_tree_is_not_a_path(tree: Path) -> None:
    """Even a link to a directory inside the tree is not walked: one rule, no path checks."""
    report = extract(
        archive(
            member("ws/real", kind=tarfile.DIRTYPE),
            member("ws/alias", kind=tarfile.SYMTYPE, link="real"),
            member("ws/alias/f", b"x"),
        ),
        tree,
        strip_components=1,
    )
    assert not (tree / "real" / "f").exists() and [item.path for item in report.skipped] == ["alias/f"]


def test_devices_and_fifos_are_dropped(tree: Path) -> None:
    report = extract(
        archive(
            member("ws/fifo", kind=tarfile.FIFOTYPE),
            member("ws/null", kind=tarfile.CHRTYPE),
            member("ws/disk", kind=tarfile.BLKTYPE),
        ),
        tree,
        strip_components=1,
    )
    assert list(tree.iterdir()) == []
    assert {item.reason for item in report.skipped} == {"special file"}


def test_limits_skip_and_report(tree: Path) -> None:
    report = extract(
        archive(member("ws/big", b"x" * 100), member("ws/a", b"a" * 40), member("ws/b", b"b" * 40)),
        tree,
        strip_components=1,
        max_file=50,
        max_total=60,
    )
    assert [p.name for p in tree.iterdir()] == ["a"]
    assert [(s.path, s.size, s.reason) for s in report.skipped] == [("big", 100, TOO_LARGE), ("b", 40, OVER_TOTAL)]


def test_a_huge_extended_header_is_refused(tree: Path) -> None:
    info = tarfile.TarInfo("ws/f")
    info.pax_headers = {"comment": "x" * (2 * 1024 * 1024)}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b""))
    buffer.seek(0)
    with pytest.raises(UnsafeArchive):
        extract(buffer, tree, strip_components=1)


def test_dropped_names_never_land(tree: Path) -> None:
    extract(
        archive(member("ws/.git/config", b"[core]\n"), member("ws/sub/.git", b"gitdir: /x\n"), member("ws/k", b"k")),
        tree,
        strip_components=1,
        drop=lambda parts: ".git" in parts,
    )
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*")) == ["k"]


def test_unwritable_names_are_skipped_not_fatal(tree: Path) -> None:
    report = extract(
        archive(
            member("ws/" + "n" * 300, b"long name"),
            member("ws/link", kind=tarfile.SYMTYPE, link="t" * 5000),
            member("ws/ok", b"ok"),
        ),
        tree,
        strip_components=1,
    )
    assert [p.name for p in tree.iterdir()] == ["ok"]
    assert len(report.skipped) == 2 and all(s.reason.startswith("cannot be written") for s in report.skipped)
