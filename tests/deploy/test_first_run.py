"""README's first lines stay two commands that need only a system `python3`, and CI runs the
second one exactly.

What the scripts do on a fresh Debian (PEP 668, no python3-venv) needs the network to install
packages, so it is not a unit test here; it was checked by hand by hiding ensurepip with a bind
mount (`scripts/install` falls back to `venv --without-pip` + scripts/bootstrap_pip.py).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _first_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README has no bash block"
    return [ln.split("#")[0].strip() for ln in block.group(1).strip().splitlines()]


def test_readme_starts_with_two_commands_through_the_venv() -> None:
    run, test = _first_block()
    assert run == "./scripts/install && .venv/bin/llm-oncall run"
    assert test == "./scripts/test"
    assert "pip install" not in run, "a bare pip install fails on PEP 668 system Python"


def test_ci_runs_the_readme_test_command() -> None:
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [ln for ln in lines if ln and not ln.startswith("#")]
    assert commands[-1] == "./scripts/test"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "prometheus-alertmanager" in ci and "missing+=(prometheus)" in ci


def test_scripts_are_executable_and_parse() -> None:
    for name in ("install", "test"):
        script = ROOT / "scripts" / name
        assert os.access(script, os.X_OK), f"scripts/{name} is not executable"
        subprocess.run(["bash", "-n", str(script)], check=True)
    subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")], check=True)
    test = (ROOT / "scripts" / "test").read_text()
    assert "./scripts/install test" in test and "python3 -m pip" not in test


def test_install_refuses_an_old_python_by_name(tmp_path: Path) -> None:
    old = tmp_path / "python3.9"
    old.write_text("#!/bin/sh\n[ \"$1\" = -V ] && echo 'Python 3.9.2' && exit 0\nexit 1\n")
    old.chmod(0o755)
    res = subprocess.run(
        [str(ROOT / "scripts" / "install")],
        env=os.environ | {"PYTHON": str(old), "VENV_DIR": str(tmp_path / "venv")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 1
    assert "needs Python 3.11+" in res.stderr and "Python 3.9.2" in res.stderr, res.stderr
    assert not (tmp_path / "venv").exists()
