"""The code base stays clean: ruff (lint + format, numpy docstrings), snakefmt and Snakemake's linter."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "cmd",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["snakefmt", "--check", "Snakefile", "rules/"],
    ],
)
def test_tool_is_clean(cmd):
    res = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_snakemake_lint_is_clean():
    import os

    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    res = subprocess.run([str(BIN / "snakemake"), "--lint"], cwd=REPO, capture_output=True, text=True, env=env)
    assert res.returncode == 0 and "Congratulations" in res.stdout + res.stderr, res.stdout[-3000:] + res.stderr[-3000:]
