"""The registry URL as shown to people: its password is never printed (`config show`, errors, `--debug`).

Kept free of SQLAlchemy for the fast paths: a URL is masked with the standard library, and
any text (an error message, a traceback) is scrubbed of the password in its raw and decoded forms.
"""

from __future__ import annotations

import os
import re

MASK = "***"
# scheme://user:password@host... ; the password runs to the last `@` before the host part.
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*:)(?P<password>[^/?#]*)(?P<tail>@.*)$", re.S)


def password_of(url: str) -> str | None:
    """The URL's password as written (percent-encoded or not), or None."""
    found = _USERINFO.match(url)
    return found.group("password") or None if found else None


def masked(url: str) -> str:
    """The URL with its password replaced by `***` (what SQLAlchemy's `hide_password` prints)."""
    found = _USERINFO.match(url)
    if not found or not found.group("password"):
        return url
    return f"{found.group('head')}{MASK}{found.group('tail')}"


def scrub(text: str, url: str | None) -> str:
    """`text` with every form of `url`'s password replaced by `***`."""
    password = password_of(url or "")
    if not password:
        return text
    from urllib.parse import unquote  # only with a password: exec's start-up never needs it (~2 ms)

    for form in sorted({password, unquote(password)}, key=len, reverse=True):
        if form:
            text = text.replace(form, MASK)
    return text


def db_url_from(argv: list[str]) -> str | None:
    """The registry URL a command line names (`--db URL`, `--db=URL`), else `$SANDBOXCTL_DB`."""
    for index, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--db" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--db="):
            return arg.removeprefix("--db=")
    return os.environ.get("SANDBOXCTL_DB")
