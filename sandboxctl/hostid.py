"""Which host this is, as recorded on sandboxes and compared before touching host-bound resources."""

from __future__ import annotations

import os
import socket

# Overrides the host name: for tests and for containers whose hostname changes on every start.
ENV_HOSTNAME = "SANDBOXCTL_HOSTNAME"


def this_host() -> str:
    """`$SANDBOXCTL_HOSTNAME`, else the machine's host name."""
    return os.environ.get(ENV_HOSTNAME) or socket.gethostname()
