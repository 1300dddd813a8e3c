"""Which host and user this is, as recorded on sandboxes (audit) and compared before touching host-bound
resources."""

from __future__ import annotations

import os
import socket

# Overrides the host name: for tests and for containers whose hostname changes on every start.
ENV_HOSTNAME = "SANDBOXCTL_HOSTNAME"
# Who a sandbox is recorded as created by: CI bots and services name themselves, people are their OS user.
ENV_USER = "SANDBOXCTL_USER"


def this_host() -> str:
    """`$SANDBOXCTL_HOSTNAME`, else the machine's host name."""
    return os.environ.get(ENV_HOSTNAME) or socket.gethostname()


def this_user() -> str:
    """`$SANDBOXCTL_USER`, else the OS user (its uid when it has no name, e.g. in a container)."""
    explicit = os.environ.get(ENV_USER)
    if explicit:
        return explicit
    import getpass  # here: only `create` records a user, and exec's start-up need not pay for it

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return str(os.getuid())
