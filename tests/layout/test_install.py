"""`pip install .` installs one top-level package, `tonglu`, with its pages, templates and the
offline verifier; nothing else (no generic `web`, `storage`, ... beside it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_wheel_holds_exactly_one_top_level_package(tmp_path: Path) -> None:
    src = tmp_path / "checkout"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        check=True, cwd=tmp_path, timeout=240,
    )
    (wheel,) = out.glob("tonglu-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert top == {"tonglu", next(t for t in top if t.endswith(".dist-info"))}, top
    for needed in (
        "tonglu/evidence/verify_core.py",
        "tonglu/web/templates/console.html",
        "tonglu/integrity/templates/report.html",
        "tonglu/integrity/risk/default.yaml",  # the shipped risk rules
        "tonglu/bench/commands.py",
    ):
        assert needed in names, needed
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "tonglu = tonglu.cli:main" in entry_points
    assert "bench = tonglu.bench.commands:register" in entry_points
