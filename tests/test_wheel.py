"""The package as a user installs it: the built wheel in a fresh virtual environment, far from the checkout."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailer.settings import PROJECT_ROOT
from tests.conftest import ISSUE_2026


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a new virtual environment with the wheel built from this checkout installed in it."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(root / "dist"), str(PROJECT_ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    wheel = next((root / "dist").glob("wip_mailer-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    subprocess.run(
        [str(root / "venv" / "bin" / "pip"), "install", "--quiet", str(wheel)], check=True, capture_output=True, timeout=900,
    )
    return root / "venv" / "bin"


def test_the_installed_wheel_composes_an_issue_away_from_the_checkout(installed: Path, tmp_path: Path) -> None:
    issue = tmp_path / "issue.md"
    issue.write_text(ISSUE_2026.read_text(encoding="utf-8"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILER_", "PYTHON"))}
    env["MAILER_DATABASE_URL"] = f"sqlite:///{tmp_path / 'mailer.sqlite'}"
    where = subprocess.run(
        [str(installed / "python"), "-c", "import mailer, mailer.settings as s; print(mailer.__file__); print(s.TEMPLATES_DIR)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    package_file, templates = where.stdout.split()
    assert not package_file.startswith(str(PROJECT_ROOT)) and templates.endswith("site-packages/mailer/templates")
    result = subprocess.run(
        [str(installed / "mailer"), "preview", str(issue), "--out", str(tmp_path / "out")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "Work in Progress" in html and "EXPOSED Torino Photo Festival" in html
    assert "Torna la newsletter della Città di Torino" in (tmp_path / "out" / "message.txt").read_text(encoding="utf-8")
    check = subprocess.run([str(installed / "mailer"), "db", "upgrade"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and "upgraded from revision none" in check.stdout, check.stderr  # the migrations travel too
