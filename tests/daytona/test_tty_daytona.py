"""`shell` / `exec -it` on Daytona: refused clearly (exit 2) until the PTY session is wired, with nothing run."""

from __future__ import annotations

import pexpect
import pytest

from ..conftest import SANDBOXCTL, Cli
from .conftest import Target

pytestmark = pytest.mark.daytona


@pytest.mark.parametrize("args", [("shell",), ("exec", "-it")])
def test_terminal_on_daytona_is_refused_with_exit_2(dcli: Cli, target: Target, args: tuple[str, ...]) -> None:
    sandbox_id = dcli.ok("create", "--backend", "daytona", "--image", target.image).stdout.strip()
    command = ["--", "sh"] if args[0] == "exec" else []
    child = pexpect.spawn(SANDBOXCTL, [*args, sandbox_id, *command], env=dcli.env, timeout=60, encoding="utf-8")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2, child.before
    assert child.before.strip() == (
        "error: interactive terminals are not supported on daytona yet: "
        "use `sandboxctl exec SANDBOX -- CMD` (stdin is forwarded)"
    )
    dcli.ok("delete", sandbox_id)
