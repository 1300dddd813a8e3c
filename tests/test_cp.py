"""`sandboxctl cp`: both ways, docker cp's rules, streamed, modes kept, hostile content refused."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import SANDBOXCTL, Cli


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _run(cli: Cli, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([SANDBOXCTL, *args], input=stdin, capture_output=True, env=cli.env, timeout=300)


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def sandbox(request: pytest.FixtureRequest, cli: Cli) -> Iterator[str]:
    args = ["create", "--backend", request.param, "--ttl", "30m"]
    if request.param == "docker":
        args += ["--image", request.getfixturevalue("docker_image")]
    sandbox_id = cli.ok(*args).stdout.strip()
    yield sandbox_id
    cli("delete", sandbox_id)


@pytest.fixture
def root(cli: Cli, sandbox: str, tmp_path: Path) -> str:
    """A directory of this test's own in the sandbox (a local sandbox's paths are the host's)."""
    if cli.ok("status", sandbox, "--json").json()["backend"] == "local":
        return str(tmp_path / "in-sandbox")
    return f"/tmp/{uuid.uuid4().hex}"


def _tree(root: Path) -> Path:
    (root / "src" / "sub").mkdir(parents=True)
    (root / "src" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "src" / "run.sh").chmod(0o750)
    (root / "src" / "secret").write_text("s")
    (root / "src" / "secret").chmod(0o600)
    (root / "src" / "sub" / "x").write_text("x")
    (root / "src" / "sub").chmod(0o700)
    return root / "src"


def test_cp_round_trips_files_and_directories_with_their_modes(
    cli: Cli, sandbox: str, root: str, tmp_path: Path
) -> None:
    src = _tree(tmp_path)
    cli.ok("cp", str(src), f"{sandbox}:{root}/in")  # a missing DEST: created with SRC's content
    listing = cli.ok("exec", sandbox, "--", "ls", "-l", f"{root}/in/run.sh", f"{root}/in/secret").stdout
    assert "-rwxr-x---" in listing and "-rw-------" in listing, listing
    out = tmp_path / "out"
    cli.ok("cp", f"{sandbox}:{root}/in", str(out))
    assert (out / "run.sh").read_text() == "#!/bin/sh\necho hi\n"
    assert (_mode(out), _mode(out / "run.sh"), _mode(out / "secret"), _mode(out / "sub")) == (
        _mode(src),
        0o750,
        0o600,
        0o700,
    )
    assert (out / "sub" / "x").read_text() == "x"


def test_cp_follows_docker_cp_rules_for_existing_directories(cli: Cli, sandbox: str, root: str, tmp_path: Path) -> None:
    src = _tree(tmp_path)
    cli.ok("exec", sandbox, "--", "mkdir", "-p", f"{root}/dir")
    cli.ok("cp", str(src), f"{sandbox}:{root}/dir")  # an existing directory: SRC goes inside it
    cli.ok("cp", f"{src}/.", f"{sandbox}:{root}/dir")  # `/.`: the content is merged
    cli.ok("cp", str(src / "secret"), f"{sandbox}:{root}/dir/renamed")  # a file to a missing name: renamed
    cli.ok("exec", sandbox, "--", "ln", "-s", f"{root}/dir", f"{root}/alias")
    (tmp_path / "note").write_text("n")
    cli.ok("cp", str(tmp_path / "note"), f"{sandbox}:{root}/alias")  # a link to a directory: copied into it
    found = cli.ok("exec", sandbox, "--", "sh", "-c", f"cd {root}/dir && find . | sort").stdout.split()
    assert {"./src/run.sh", "./run.sh", "./sub/x", "./renamed", "./note"} <= set(found), found

    dest = tmp_path / "dest"
    dest.mkdir()
    cli.ok("cp", f"{sandbox}:{root}/dir/renamed", str(dest))  # into an existing directory
    cli.ok("cp", f"{sandbox}:{root}/dir/src/.", str(dest))  # content merged
    cli.ok("cp", f"{sandbox}:{root}/dir/src", str(dest))  # the directory inside
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == sorted(
        ["renamed", "run.sh", "secret", "sub", "sub/x", "src", "src/run.sh", "src/secret", "src/sub", "src/sub/x"]
    )
    (dest / "file").write_text("old")
    cli.ok("cp", f"{sandbox}:{root}/dir/renamed", str(dest / "file"))  # an existing file: replaced
    assert (dest / "file").read_text() == "s"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["{sb}:{root}", "{sb}:{root}"], 2),  # a sandbox on both sides
        (["a", "b"], 2),  # on neither
        (["{tmp}/missing", "{sb}:{root}"], 2),  # no such host file
        (["{sb}:/no/such", "{tmp}/x"], 1),  # no such sandbox file
        (["nosuchsandbox:/tmp", "{tmp}/x"], 3),
        (["{sb}:{root}/f", "{tmp}/nodir/"], 1),  # DEST/ must be an existing directory
        (["{sb}:{root}", "{tmp}/file"], 1),  # a directory onto a file
    ],
)
def test_cp_bad_input_is_one_error_line_and_writes_nothing(
    cli: Cli, sandbox: str, root: str, tmp_path: Path, args: list[str], code: int
) -> None:
    cli.ok("exec", sandbox, "--", "sh", "-c", f"mkdir -p {root} && touch {root}/f")
    (tmp_path / "file").write_text("kept")
    before = sorted(tmp_path.iterdir())
    result = cli("cp", *(a.format(sb=sandbox, tmp=tmp_path, root=root) for a in args))
    assert result.returncode == code, result
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1, result.stderr
    assert sorted(tmp_path.iterdir()) == before and (tmp_path / "file").read_text() == "kept"


def test_cp_dash_streams_a_tar_both_ways(cli: Cli, sandbox: str, root: str, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("hello/world.txt")
        info.size, info.mode = 5, 0o640
        archive.addfile(info, io.BytesIO(b"hello"))
    result = _run(cli, "cp", "-", f"{sandbox}:{root}/fromtar", stdin=buffer.getvalue())
    assert result.returncode == 0, result.stderr
    out = _run(cli, "cp", f"{sandbox}:{root}/fromtar", "-")
    assert out.returncode == 0, out.stderr
    with tarfile.open(fileobj=io.BytesIO(out.stdout), mode="r") as archive:
        member = archive.getmember("fromtar/hello/world.txt")
        assert (archive.extractfile(member).read(), member.mode & 0o777) == (b"hello", 0o640)  # type: ignore[union-attr]


def test_cp_out_never_writes_through_a_link_from_the_sandbox(cli: Cli, sandbox: str, root: str, tmp_path: Path) -> None:
    """A sandbox makes `d/l` a link to a host directory; a later copy with `d/l/` as a directory must not
    write into that host directory."""
    victim = tmp_path / "victim"
    victim.mkdir()
    cli.ok(
        "exec",
        sandbox,
        "--",
        "sh",
        "-c",
        f"mkdir -p {root}/d && ln -s {victim} {root}/d/l && ln -s /etc/passwd {root}/d/p",
    )
    dest = tmp_path / "dest"
    cli.ok("cp", f"{sandbox}:{root}/d", str(dest))
    assert os.readlink(dest / "l") == str(victim)  # kept as a link, never followed
    cli.ok(
        "exec", sandbox, "--", "sh", "-c", f"rm {root}/d/l {root}/d/p && mkdir {root}/d/l && echo pwned > {root}/d/l/x"
    )
    cli.ok("exec", sandbox, "--", "sh", "-c", f"echo pwned > {root}/d/p")
    cli.ok("cp", f"{sandbox}:{root}/d/.", str(dest))
    assert list(victim.iterdir()) == []
    assert (dest / "l" / "x").read_text() == "pwned\n" and not (dest / "l").is_symlink()
    assert not (dest / "p").is_symlink() and (dest / "p").read_text() == "pwned\n"
    (tmp_path / "target").symlink_to(victim / "file")  # DEST itself a link: replaced, not written through
    cli.ok("cp", f"{sandbox}:{root}/d/p", str(tmp_path / "target"))
    assert not (victim / "file").exists() and (tmp_path / "target").read_text() == "pwned\n"


class _CraftedTar:
    """A backend whose sandbox answers with a crafted tar (what a compromised sandbox could send)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    @contextlib.contextmanager
    def download_archive(self, backend_id: str, path: str, *, max_file: int | None = None) -> Iterator[io.BytesIO]:
        yield io.BytesIO(self.data)


def _crafted(victim: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:

        def add(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes = b"x") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode = kind, link, 0o4777
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add("d", tarfile.DIRTYPE)
        add("d/l", tarfile.SYMTYPE, str(victim))
        add("d/l/x")  # through the link just made
        add("d/../escape")
        add("/abs")
        add("beside")  # not under the copied name
        add("d/h", tarfile.LNKTYPE, str(victim / "host"))
        add("d/ok")
    return buffer.getvalue()


def test_cp_out_refuses_a_crafted_tar(tmp_path: Path) -> None:
    from sandboxctl.services import copying

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "host").write_text("host")
    dest = tmp_path / "dest"
    dest.mkdir()
    backend = _CraftedTar(_crafted(victim))
    report = copying._extract(backend, "x", "/d", dest, drop=copying._only("d"))  # type: ignore[arg-type]
    assert sorted(p.name for p in victim.iterdir()) == ["host"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "dest",
        "dest/d",
        "dest/d/l",
        "dest/d/ok",
        "victim",
        "victim/host",
    ]
    assert _mode(dest / "d" / "ok") == 0o777  # modes kept, never setuid
    assert {s.path for s in report.skipped} >= {"d/l/x", "d/h"}


@pytest.mark.docker
def test_cp_streams_a_1_gib_file_both_ways_in_bounded_memory(cli: Cli, docker_image: str, tmp_path: Path) -> None:
    sandbox = cli.ok("create", "--backend", "docker", "--image", docker_image, "--ttl", "30m").stdout.strip()
    try:
        big = tmp_path / "big"
        with big.open("wb") as handle:
            handle.truncate(1 << 30)  # sparse on the host; 1 GiB of tar both ways
        measure = (
            "import resource, subprocess, sys; "
            "code = subprocess.run(sys.argv[1:]).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
        )
        for args in ((str(big), f"{sandbox}:/tmp/big"), (f"{sandbox}:/tmp/big", str(tmp_path / "back"))):
            result = subprocess.run(
                [sys.executable, "-c", measure, SANDBOXCTL, "cp", *args],
                capture_output=True,
                text=True,
                env=cli.env,
                timeout=600,
            )
            assert result.returncode == 0, result.stderr
            peak_kib = int(result.stdout.split()[-1])
            assert peak_kib < 200 * 1024, f"peak RSS {peak_kib} KiB copying {args}"
        assert (tmp_path / "back").stat().st_size == 1 << 30
    finally:
        cli("delete", sandbox)


def test_cp_out_stops_at_the_entry_limit_and_keeps_what_was_written(tmp_path: Path) -> None:
    """A sandbox answers with a tar of far more members than the limit, most of them refused: the copy stops
    at the limit (`MAX_ENTRIES_OUT` unless lowered, as here), keeps what it wrote and says so once."""
    import inspect

    from sandboxctl import safe_extract
    from sandboxctl.services import copying

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.addfile(tarfile.TarInfo("d/kept"), io.BytesIO(b""))
        for i in range(20_000):
            info = tarfile.TarInfo(f"d/fifo{i}" if i % 2 else f"d/../up{i}")
            info.type = tarfile.FIFOTYPE if i % 2 else tarfile.REGTYPE
            archive.addfile(info, io.BytesIO(b""))
        archive.addfile(tarfile.TarInfo("d/late"), io.BytesIO(b""))
    dest = tmp_path / "dest"
    dest.mkdir()
    backend = _CraftedTar(buffer.getvalue())
    report = copying._extract(backend, "x", "/d", dest, drop=copying._only("d"), max_entries=5000)  # type: ignore[arg-type]
    assert sorted(p.name for p in dest.rglob("*")) == ["d", "kept"]
    assert len(report.skipped) == safe_extract.MAX_LISTED + 2
    assert report.skipped[-1].reason == "entry limit reached (5000): the rest of the archive was not extracted"
    default = inspect.signature(copying._extract).parameters["max_entries"].default
    assert default == copying.MAX_ENTRIES_OUT == 1_000_000
    assert len(copying.CopyReport("x", "out", 0, report.skipped).to_json()["skipped"]) == 1002  # type: ignore[arg-type]


def test_the_local_backend_streams_a_large_tree_without_keeping_its_members(tmp_path: Path) -> None:
    """tarfile keeps every TarInfo it writes: copying a tree of many entries out of a local sandbox held all of
    them in memory while it streamed (tracemalloc counts Python's own allocations: no timing involved)."""
    import threading
    import tracemalloc

    from sandboxctl.backends.local import _write_tar

    tree = tmp_path / "tree"
    tree.mkdir()
    for d in range(100):  # 100 directories of 200 files: what a member costs, not what one listing costs
        (tree / f"d{d}").mkdir()
        for i in range(200):
            (tree / f"d{d}" / f"f{i}").touch()
    read_fd, write_fd = os.pipe()
    drained = threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(read_fd, 65536), b"")])
    drained.start()
    tracemalloc.start()
    try:
        _write_tar(tree, write_fd)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        drained.join(120)
        os.close(read_fd)
    assert peak < 2 * 1024 * 1024, f"{peak / 2**20:.1f} MiB held while streaming 20,100 entries"
