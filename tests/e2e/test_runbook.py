"""docs/runbook.md names commands that exist; the ones marked read-only run here, against the test
database and broker."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys

import pytest
from django.core.management import get_commands

from tests.support.host import ROOT
from tests.support.workers import service_env

RUNBOOK = (ROOT / "docs" / "runbook.md").read_text()
COMMANDS = [
    line[2:].strip()
    for block in re.findall(r"```console\n(.*?)```", RUNBOOK, re.S)
    for line in block.splitlines()
    if line.startswith("$ ")
]
READ_ONLY = [c.split("  # read-only")[0] for c in COMMANDS if c.endswith("# read-only")]
MAKE_TARGETS = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))


def celery_subcommands() -> set[str]:
    out = subprocess.run([sys.executable, "-m", "celery", "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"^\s{2}([a-z_]+)\s", out, re.M))


def test_the_runbook_has_the_procedures_an_operator_needs():
    for heading in ("Start", "Scale an agent", "Drain a worker", "Deploy without loss", "The broker is down",
                    "The database is down", "Dead letters: triage and replay", "Stuck work", "A noisy tenant",
                    "Rotating API keys"):  # fmt: skip
        assert f"## {heading}" in RUNBOOK, heading
    assert len(COMMANDS) >= 15 and len(READ_ONLY) >= 5


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_exists(command):
    words = shlex.split(command)
    if words[0] == "make":
        assert words[1] in MAKE_TARGETS
    elif words[:2] == ["python", "manage.py"]:
        assert words[2] in get_commands(), words[2]
    elif words[:3] == ["celery", "-A", "config"]:
        assert words[3] in celery_subcommands(), words[3]
    else:
        assert shutil.which(words[0]), words[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("command", READ_ONLY)
def test_read_only_commands_run(command):
    line = command.replace("python manage.py", f"{sys.executable} manage.py", 1)
    result = subprocess.run(
        line, shell=True, cwd=ROOT, env=service_env(platform=True), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
