"""Labels and `--env`: parsing, the reserved `sandboxctl.` namespace, secrets kept out of errors."""

from __future__ import annotations

import pytest

from sandboxctl.envvars import collect_env
from sandboxctl.errors import UsageError
from sandboxctl.labels import parse_labels


def test_labels_parse_and_refuse_reserved_namespace() -> None:
    assert parse_labels(["team=ml", "ci/job=42", "empty="]) == {"team": "ml", "ci/job": "42", "empty": ""}
    for bad in ["novalue", "=v", "sp ace=1", "sandboxctl.id=x"]:
        with pytest.raises(UsageError):
            parse_labels([bad])


def test_env_error_never_echoes_the_value() -> None:
    with pytest.raises(UsageError) as info:
        collect_env(["1BAD=hunter2-secret"])
    assert "hunter2-secret" not in str(info.value)
    assert collect_env(["TOKEN=a=b"]) == {"TOKEN": "a=b"}
