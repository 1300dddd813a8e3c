"""safe_extract on crafted archives, as a hostile sandbox would build them (issue 9, point 3)."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxctl.safe_extract import (
    MAX_LISTED,
    MAX_NAME,
    NAME_TOO_LONG,
    NOT_EXTRACTED,
    OVER_TOTAL,
    TOO_LARGE,
    UnsafeArchive,
    entry_limit_reason,
    extract,
)


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


def _flood(count: int) -> Iterator[tuple]:
    """What an agent leaves to exhaust the host: mostly refused members (`..` names, devices, fifos,
    hardlinks out), some links and empty files, each with its own name."""
    for i in range(count):
        match i % 5:
            case 0:
                yield member(f"ws/../escape{i}")
            case 1:
                yield member(f"ws/dev{i}", kind=tarfile.CHRTYPE)
            case 2:
                yield member(f"ws/fifo{i}", kind=tarfile.FIFOTYPE)
            case 3:
                yield member(f"ws/hard{i}", kind=tarfile.LNKTYPE, link="/etc/passwd")
            case _:
                yield member(f"ws/d{i % 7}/empty{i}")


class _Pipe:
    """A tar written member by member into a real pipe by a thread, as a backend streams it; `sent` counts
    the members the writer got into the pipe before the reader stopped."""

    def __init__(self, members: Iterator[tuple]) -> None:
        read_fd, self._write_fd = os.pipe()
        self.stream = os.fdopen(read_fd, "rb")
        self.sent = 0
        self.finished = False
        self._members = members
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()

    def _write(self) -> None:
        try:
            with os.fdopen(self._write_fd, "wb") as pipe, tarfile.open(fileobj=pipe, mode="w|") as tar:
                for info, data in self._members:
                    tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
                    tar.members.clear()  # the writer's own list: not what is measured here
                    self.sent += 1
            self.finished = True
        except BrokenPipeError:
            pass

    def close(self) -> None:
        self.stream.close()
        self._thread.join(timeout=60)


def test_a_flood_of_members_stops_at_the_entry_limit(tree: Path) -> None:
    """200,000 members, most of them refused: reading stops at the cap, at most the cap is written, and the
    report stays a bounded list whatever the archive holds."""
    pipe = _Pipe(_flood(200_000))
    try:
        report = extract(pipe.stream, tree, strip_components=1, max_entries=2000)
    finally:
        pipe.close()
    assert not pipe.finished and pipe.sent < 10_000, pipe.sent  # the rest was never read
    assert report.entry_limit_reached and report.entries == 2000
    assert len(list(tree.rglob("*"))) <= 2000
    assert len(report.skipped) <= MAX_LISTED + 2
    assert report.skipped[-1].path == NOT_EXTRACTED and report.skipped[-1].reason == entry_limit_reason(2000)
    assert report.skipped[-1].reason == "entry limit reached (2000): the rest of the archive was not extracted"


def test_the_report_lists_a_bounded_number_of_skips_and_counts_the_rest(tree: Path) -> None:
    report = extract(
        archive(*(member(f"ws/fifo{i}", kind=tarfile.FIFOTYPE) for i in range(MAX_LISTED + 2345))),
        tree,
        strip_components=1,
    )
    assert len(report.skipped) == MAX_LISTED + 1 and not report.entry_limit_reached
    assert [s.path for s in report.skipped[:2]] == ["fifo0", "fifo1"]
    assert (report.skipped[-1].path, report.skipped[-1].reason) == (NOT_EXTRACTED, "and 2345 more not listed")


def test_directories_made_for_a_deep_name_count_as_entries(tree: Path) -> None:
    """One member `a/a/.../a/f` would make thousands of directories: each one is an entry."""
    deep = "/".join(["a"] * 2000)
    report = extract(archive(member(f"ws/{deep}/f", b"x")), tree, strip_components=1, max_entries=50)
    assert len(list(tree.rglob("*"))) == 49  # the member itself is one entry, each directory made one more
    assert report.entry_limit_reached and report.skipped[-1].reason == entry_limit_reason(50)


def test_under_the_entry_limit_nothing_changes(tree: Path) -> None:
    """Exactly `max_entries` entries: everything is written, hardlinks still copy files this extraction
    wrote (never one that was in DEST before), and nothing is reported."""
    (tree / "before").write_text("was in DEST\n")
    members = [
        member("ws/d", kind=tarfile.DIRTYPE),
        *(member(f"ws/d/f{i}", f"{i}\n".encode()) for i in range(5)),
        member("ws/d/copy", kind=tarfile.LNKTYPE, link="ws/d/f3"),
        member("ws/l", kind=tarfile.SYMTYPE, link="d/f0"),
        member("ws/stolen", kind=tarfile.LNKTYPE, link="ws/before"),
    ]
    report = extract(archive(*members), tree, strip_components=1, max_entries=len(members))
    assert not report.entry_limit_reached and report.entries == len(members)
    assert [(s.path, s.reason) for s in report.skipped] == [("stolen", "hardlink to a file outside the extracted tree")]
    assert sorted(p.name for p in (tree / "d").iterdir()) == ["copy", "f0", "f1", "f2", "f3", "f4"]
    assert (tree / "d" / "copy").read_text() == "3\n" and os.readlink(tree / "l") == "d/f0"


def test_a_name_longer_than_path_max_is_refused_and_shown_cut(tree: Path) -> None:
    name = "/".join(["n" * 200] * 50)  # 10,049 bytes: each part fits a file system, the whole no path
    report = extract(archive(member(f"ws/{name}", b"x"), member("ws/ok", b"ok")), tree, strip_components=1)
    assert [p.name for p in tree.iterdir()] == ["ok"]
    [skipped] = report.skipped
    assert skipped.reason == NAME_TOO_LONG and len(skipped.path) == MAX_NAME + 1 and name.startswith(skipped.path[:-1])


def _pax(kind: bytes, headers: dict[str, str]) -> bytes:
    return tarfile.TarInfo._create_pax_generic_header(headers, kind, "utf-8")  # type: ignore[attr-defined]


def _raw_archive(prefix: bytes) -> io.BytesIO:
    info = tarfile.TarInfo("ws/f")
    info.size = 1
    body = info.tobuf(tarfile.USTAR_FORMAT) + b"x".ljust(tarfile.BLOCKSIZE, b"\0")
    return io.BytesIO(prefix + body + b"\0" * tarfile.RECORDSIZE)


def test_chained_and_global_extended_headers_are_bounded(tree: Path) -> None:
    """tarfile reads each header after an extended one recursively, each level holding its (up to 1 MiB)
    header, and keeps every global header's keys for the rest of the stream."""
    assert extract(_raw_archive(_pax(tarfile.XHDTYPE, {"comment": "ok"})), tree, strip_components=1).skipped == []
    chained = b"".join(_pax(tarfile.XHDTYPE, {"comment": str(i)}) for i in range(3000))
    with pytest.raises(UnsafeArchive, match="extended headers in a row"):
        extract(_raw_archive(chained), tree, strip_components=1)
    globals_ = b"".join(_pax(tarfile.XGLTYPE, {f"k{i}": "v" * 600_000}) for i in range(2))
    with pytest.raises(UnsafeArchive, match="global headers"):
        extract(_raw_archive(globals_), tree, strip_components=1)


def test_kept_directory_modes_are_set_whether_now_or_last(tree: Path) -> None:
    """Regression guard for remembering fewer directory modes: an open one is set at once, a read-only one
    after its content, and the last member of a name decides."""

    def directory(name: str, mode: int) -> tuple:
        info, data = member(name, kind=tarfile.DIRTYPE)
        info.mode = mode
        return info, data

    extract(
        archive(
            directory("ws/ro", 0o555),
            member("ws/ro/f", b"f"),
            directory("ws/open", 0o750),
            member("ws/open/g", b"g"),
            directory("ws/twice", 0o500),
            directory("ws/twice", 0o711),
        ),
        tree,
        strip_components=1,
        keep_modes=True,
    )
    modes = {name: (tree / name).stat().st_mode & 0o777 for name in ("ro", "open", "twice")}
    assert modes == {"ro": 0o555, "open": 0o750, "twice": 0o711}
    assert (tree / "ro" / "f").read_text() == "f" and (tree / "open" / "g").read_text() == "g"
