"""What comes back from a sandbox is hostile: git config, hooks, attributes and nested repositories in the
returned workspace never run anything on the host, and odd file names stay unambiguous (issue 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import Cli
from .conftest import git, read_events


def agent_run(cli: Cli, backend: list[str], *args: str, env: dict[str, str] | None = None) -> dict:
    result = cli("agent-run", *backend, "--json", *args, env=env)
    assert result.returncode == 0, str(result)
    return result.json()


@pytest.fixture
def with_submodule(tmp_path: Path) -> Path:
    """A repository with a.txt and a submodule `sub` (a gitlink plus .gitmodules)."""
    repo = tmp_path / "with-sub"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    (repo / "a.txt").write_text("a\n")
    (repo / ".gitmodules").write_text('[submodule "sub"]\n\tpath = sub\n\turl = https://127.0.0.1:9/sub.git\n')
    git("add", "-A", cwd=repo)
    git("update-index", "--add", "--cacheinfo", "160000,1111111111111111111111111111111111111111,sub", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "with a submodule", cwd=repo)
    return repo


def test_submodule_fsmonitor_config_never_runs_on_the_host(
    cli: Cli, backend: list[str], with_submodule: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "fsmonitor-ran"
    agent = (
        "mkdir -p sub/.git/objects sub/.git/refs/heads && printf 'ref: refs/heads/nope\\n' > sub/.git/HEAD && "
        f"printf '[core]\\n\\tfsmonitor = \"id > {marker}; false\"\\n' > sub/.git/config && echo x >> a.txt"
    )
    summary = agent_run(cli, backend, "--repo", str(with_submodule), "--", "sh", "-c", agent)
    assert not marker.exists()
    assert summary["changed_files"] == [{"path": "a.txt", "change": "modified"}]


def test_workspace_git_dir_hooks_and_hookspath_never_run(cli: Cli, backend: list[str], tmp_path: Path) -> None:
    marker = tmp_path / "hook-ran"
    hook = f"#!/bin/sh\nid > {marker}\n"
    agent = (
        "mkdir -p .git/hooks evil-hooks && "
        "for h in post-index-change reference-transaction pre-commit post-commit fsmonitor-watchman; do "
        f'printf "{hook}" > .git/hooks/$h; cp .git/hooks/$h evil-hooks/$h; done && '
        "chmod +x .git/hooks/* evil-hooks/* && "
        f"printf '[core]\\n\\thooksPath = $PWD/evil-hooks\\n\\tfsmonitor = \"id > {marker}; false\"\\n' "
        "> .git/config && "
        "echo new > new.txt"
    )
    summary = agent_run(cli, backend, "--", "sh", "-c", agent)
    assert not marker.exists()
    paths = {item["path"] for item in summary["changed_files"]}
    assert "new.txt" in paths and not any(path.startswith(".git/") for path in paths), paths


def test_gitattributes_filter_and_diff_drivers_never_run(cli: Cli, backend: list[str], tmp_path: Path) -> None:
    """The drivers are defined in the user's global git config; the workspace only names them."""
    marker = tmp_path / "driver-ran"
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text(
        f'[filter "evil"]\n\tclean = "id > {marker}; cat"\n\tsmudge = "id > {marker}; cat"\n'
        f'[diff "evil"]\n\tcommand = "id > {marker}; true"\n\ttextconv = "id > {marker}; cat"\n'
    )
    agent = (
        "printf '* filter=evil diff=evil\\n' > .gitattributes && mkdir -p deep && "
        "printf '* filter=evil diff=evil text eol=crlf\\n' > deep/.gitattributes && "
        "printf 'line\\n' > deep/file.txt && printf 'top\\n' > top.txt"
    )
    summary = agent_run(cli, backend, "--", "sh", "-c", agent, env={"GIT_CONFIG_GLOBAL": str(gitconfig)})
    assert not marker.exists()
    patch = Path(summary["patch_path"]).read_text()
    assert "+line" in patch and "+top" in patch  # contents as written: no filter, no eol conversion, text diff


def test_a_nested_repository_is_collected_as_plain_files(cli: Cli, backend: list[str], tmp_path: Path) -> None:
    """`git init`/`git clone` inside the tree (here: a fake `.git` the busybox image can make too)."""
    agent = (
        "mkdir -p vendor/dep/.git/objects vendor/dep/.git/refs/heads && "
        "printf 'ref: refs/heads/main\\n' > vendor/dep/.git/HEAD && echo dep > vendor/dep/lib.txt && "
        "echo mine > mine.txt"
    )
    summary = agent_run(cli, backend, "--", "sh", "-c", agent)
    assert summary["changed_files"] == [
        {"path": "mine.txt", "change": "added"},
        {"path": "vendor/dep/lib.txt", "change": "added"},
    ]
    patch = Path(summary["patch_path"]).read_text()
    assert "+dep" in patch and "Subproject commit" not in patch and "160000" not in patch


def test_a_real_nested_clone_on_local_is_collected_as_plain_files(cli: Cli, origin: Path) -> None:
    agent = f"git clone -q {origin} vendor/dep && echo mine > mine.txt"
    summary = agent_run(cli, ["--backend", "local"], "--", "sh", "-c", agent)
    paths = [item["path"] for item in summary["changed_files"]]
    assert "mine.txt" in paths and "vendor/dep/README.md" in paths and "vendor/dep/src/app.txt" in paths, paths
    assert not any("/.git/" in path for path in paths)
    assert "160000" not in Path(summary["patch_path"]).read_text()


def test_odd_file_names_are_quoted_in_changed_files(cli: Cli, backend: list[str]) -> None:
    agent = "printf x > \"$(printf 'new\\nline')\" && printf y > \"$(printf 'a\\tb')\" && printf z > plain.txt"
    summary = agent_run(cli, backend, "--", "sh", "-c", agent)
    listing = (Path(summary["patch_path"]).parent / "changed-files.txt").read_text()
    assert listing.splitlines() == ['"a\\tb"', '"new\\nline"', "plain.txt"]
    assert {item["path"] for item in summary["changed_files"]} == {"a\tb", "new\nline", "plain.txt"}


def test_oversized_files_are_left_out_and_reported(cli: Cli, backend: list[str], home: Path) -> None:
    """Per file (agent.max_file) and in all (--max-collect): what is over is read, discarded and listed."""
    agent = (
        "dd if=/dev/zero of=big.bin bs=1024 count=300 2>/dev/null && "
        "dd if=/dev/zero of=one.bin bs=1024 count=150 2>/dev/null && cp one.bin two.bin && echo small > small.txt"
    )
    events = home / "events.jsonl"
    result = cli(
        "agent-run", *backend, "--json", "--max-collect", "200K", "--events", str(events), "--", "sh", "-c", agent,
        env={"SANDBOXCTL_AGENT_MAX_FILE": "256K"},
    )  # fmt: skip
    assert result.returncode == 0, str(result)
    summary = result.json()
    [collected] = [event for event in read_events(events) if event["type"] == "result.collected"]
    assert collected["skipped_files"] == summary["skipped_files"]
    skipped = {item["path"]: (item["size"], item["reason"]) for item in summary["skipped_files"]}
    assert skipped.pop("big.bin") == (300 * 1024, "file too large")
    [(over, (size, reason))] = skipped.items()  # one of the two 150K files fits, the other is over the total
    assert over in ("one.bin", "two.bin") and (size, reason) == (150 * 1024, "collection limit reached")
    kept = {"one.bin", "two.bin"} - {over}
    assert {item["path"] for item in summary["changed_files"]} == {"small.txt", *kept}
    assert "warning:" in result.stderr and "big.bin" in result.stderr


def test_limit_values_are_usage_errors(cli: Cli, home: Path) -> None:
    for value in ("0", "-1", "1.5G", "lots", "99999P"):
        result = cli("agent-run", "--backend", "local", "--max-collect", value, "--", "true")
        assert result.returncode == 2, str(result)
        assert result.stderr.startswith("error: invalid size") and len(result.stderr.splitlines()) == 1
    assert cli.ok("agent", "list", "--json").json() == []


def test_quote_path_matches_git(tmp_path: Path) -> None:
    from sandboxctl.services.workspace import quote_path

    names = ["plain.txt", "new\nline", "a\tb", 'quo"te', "back\\slash", "café", "bell\x07", "del\x7f", "sp ace"]
    repo = tmp_path / "q"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    for name in names:
        (repo / name).write_text("x")
    git("add", "-A", cwd=repo)
    listed = git("-c", "core.quotePath=true", "ls-files", cwd=repo).split("\n")
    assert sorted(quote_path(name) for name in names) == sorted(listed)
