"""This machine's name as recorded with runs and sandboxes (`SANDBOXCTL_HOSTNAME` overrides it).

The override exists so that tests can play "another host" on one machine, and so
that containers sharing one registry can keep distinct, stable names.
"""

from __future__ import annotations

import os
import socket

ENV_HOSTNAME = "SANDBOXCTL_HOSTNAME"


def this_host() -> str:
    return os.environ.get(ENV_HOSTNAME) or socket.gethostname()
