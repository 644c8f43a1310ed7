"""The package's floors: config <- evidence <- recorder / transcribe / integrity <- web <- app/cli <- bench.

Every import of ours is found by parsing the source, imports inside functions and
`importlib.import_module("...")` / `__import__("...")` string imports included; no module may
import one on a higher floor, and the three middle packages do not import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "tonglu"

# module prefix -> floor; the longest matching prefix wins
FLOORS: dict[str, int] = {
    "tonglu": 0,  # tonglu/__init__.py
    "tonglu.config": 0,
    "tonglu.evidence": 1,
    "tonglu.recorder": 2,
    "tonglu.transcribe": 2,
    "tonglu.integrity": 2,
    "tonglu.web": 3,
    "tonglu.app": 4,
    "tonglu.cli": 4,
    "tonglu.commands": 4,
    "tonglu.bench": 5,
}
# packages on the same floor that must not import each other
PEERS = {"tonglu.recorder", "tonglu.transcribe", "tonglu.integrity"}


def _area(module: str) -> str:
    best = ""
    for prefix in FLOORS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    if not best:
        raise AssertionError(f"{module}: not on any floor; add it to FLOORS")
    return best


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import of ours in one file, wherever it stands in the file."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            # `from tonglu import bench` imports the subpackage
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names if base == "tonglu"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return [(line, m) for line, m in found if m == "tonglu" or m.startswith("tonglu.")]


def violations() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _area(_module_name(path))
        for line, target in imports_of(path):
            there = _area(target)
            if FLOORS[there] > FLOORS[here]:
                bad.append(f"{path.relative_to(SRC)}:{line} imports {target} (floor {FLOORS[there]} > {FLOORS[here]})")
            elif here in PEERS and there in PEERS and here != there:
                bad.append(f"{path.relative_to(SRC)}:{line} imports its peer {target}")
    return bad


def test_no_package_imports_a_higher_floor() -> None:
    assert violations() == []


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The parser finds an upward import hidden in a function body and a string import."""
    src = "def f():\n    from tonglu.web.services import Services\n    importlib.import_module('tonglu.bench.store')\n"
    probe = PACKAGE / "evidence" / "_layering_probe.py"
    probe.write_text(src, encoding="utf-8")
    try:
        found = [v for v in violations() if "_layering_probe" in v]
    finally:
        probe.unlink()
    assert len(found) == 2, found


@pytest.mark.parametrize("name", ["storage", "recorder", "transcribe", "integrity", "web"])
def test_no_generic_top_level_package_is_left(name: str) -> None:
    root = SRC.parent
    assert not (root / name / "__init__.py").exists()
    assert not (SRC / name).exists()
