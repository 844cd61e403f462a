""".ci/run runs the README's two set-up commands and fails when the test command fails or collects nothing."""
import shutil
import subprocess

import pytest

from helpers.recipes import ROOT


def ci(tmp_path, test_command: str) -> subprocess.CompletedProcess:
    """.ci/run in a copy of the project whose README's commands are ``true`` and ``test_command``."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / "README.md").write_text(f"# x\n\n## Set up and run\n\n```bash\ntrue\n{test_command}\n```\n")
    return subprocess.run(["bash", str(tmp_path / ".ci" / "run")], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command,code", [("exit 0", 0), ("exit 1", 1), ("exit 5", 1)],
                         ids=["pass", "fail", "nothing-collected"])
def test_ci_passes_only_when_the_tests_pass(tmp_path, command, code):
    result = ci(tmp_path, command)
    assert result.returncode == code, result.stdout + result.stderr
    if command == "exit 5":
        assert "pytest collected no tests: failing" in result.stdout
