"""`sandboxctl cp` on Daytona (the stand-in, or real Daytona with SANDBOXCTL_TEST_DAYTONA_REAL=1)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ..conftest import Cli
from .conftest import Target

pytestmark = pytest.mark.daytona


def test_cp_round_trips_a_tree_with_modes_and_links(dcli: Cli, target: Target, tmp_path: Path) -> None:
    sandbox = dcli.ok("create", "--backend", "daytona", "--image", target.image).stdout.strip()
    try:
        src = tmp_path / "src"
        (src / "sub").mkdir(parents=True)
        (src / "run.sh").write_text("#!/bin/sh\n")
        (src / "run.sh").chmod(0o750)
        (src / "sub" / "x").write_text("x")
        (src / "link").symlink_to("/etc/passwd")
        dcli.ok("cp", str(src), f"{sandbox}:copied")  # relative: below the sandbox's workspace
        listing = dcli.ok("exec", sandbox, "--", "sh", "-c", "cd workspace/copied && ls -l run.sh link").stdout
        assert "-rwxr-x---" in listing and "link -> /etc/passwd" in listing, listing
        out = tmp_path / "out"
        dcli.ok("cp", f"{sandbox}:copied", str(out))
        assert (out / "sub" / "x").read_text() == "x"
        assert stat.S_IMODE((out / "run.sh").stat().st_mode) == 0o750
        assert (out / "link").is_symlink() and str((out / "link").readlink()) == "/etc/passwd"
        single = tmp_path / "single"
        dcli.ok("cp", f"{sandbox}:copied/run.sh", str(single))  # a file renamed
        assert single.read_text() == "#!/bin/sh\n"
        missing = dcli("cp", f"{sandbox}:no/such", str(tmp_path / "x"))
        assert missing.returncode == 1 and missing.stderr.startswith("error: "), missing
    finally:
        dcli("delete", sandbox)
