"""Issue 9.11 for agent-run: `--env KEY` and `--env-file` reach setup and agent, and are stored nowhere."""

from __future__ import annotations

from pathlib import Path

from ..conftest import Cli

SECRET = "agent-secret-7373"


def test_agent_run_env_key_and_env_file(cli: Cli, home: Path, repo: Path, tmp_path: Path) -> None:
    env_file = tmp_path / "agent.env"
    env_file.write_text("# token for the agent\nFILE_TOKEN=from-file-5151\n")
    agent = 'test "$API_TOKEN" = agent-secret-7373 && test "$FILE_TOKEN" = from-file-5151 && echo ok > done.txt'
    result = cli(
        "agent-run", "--backend", "local", "--json", "--repo", str(repo), "--keep", "never",
        "--env", "API_TOKEN", "--env-file", str(env_file), "--", "sh", "-c", agent,
        env={"API_TOKEN": SECRET},
    )  # fmt: skip
    assert result.returncode == 0, str(result)
    assert {"path": "done.txt", "change": "added"} in result.json()["changed_files"]
    for path in home.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes() and b"from-file-5151" not in path.read_bytes(), path
    assert SECRET not in result.stdout + result.stderr
