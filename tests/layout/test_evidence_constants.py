"""The evidence model's constants are written once, in the stdlib-only verifier module that travels
in every export package; the rest of the code uses those, and writes nothing the verifier does not
know."""

from __future__ import annotations

import ast
from pathlib import Path

from tonglu.evidence import checkpoint, manifest, verify_core

SRC = Path(__file__).resolve().parents[2] / "src" / "tonglu"


def test_manifest_checkpoint_and_index_use_the_verifiers_constants() -> None:
    assert manifest.KINDS is verify_core.KINDS
    assert manifest.GENESIS is verify_core.GENESIS
    assert manifest.GAP_REASONS is verify_core.GAP_REASONS
    assert manifest.FORMAT_VERSION == verify_core.ENTRY_VERSION
    assert checkpoint.CHECKPOINT_VERSION is verify_core.CHECKPOINT_VERSION
    assert verify_core.KINDS == verify_core.MEDIA_KINDS | verify_core.ANNOTATION_KINDS
    assert not verify_core.MEDIA_KINDS & verify_core.ANNOTATION_KINDS


def _literals(call_attr: str, position: int) -> set[tuple[str, str]]:
    """(file:line, value) of every string constant passed at `position` to a `.call_attr(...)`."""
    found = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == call_attr
                    and len(node.args) > position and isinstance(node.args[position], ast.Constant)
                    and isinstance(node.args[position].value, str)):
                found.add((f"{path.relative_to(SRC)}:{node.lineno}", node.args[position].value))
    return found


def test_every_entry_kind_the_code_appends_is_known_to_the_verifier() -> None:
    written = _literals("append", 1)
    assert written, "the scan found no ledger appends: it is looking in the wrong place"
    unknown = {(w, k) for w, k in written if k not in verify_core.KINDS}
    assert unknown == set()


def test_every_gap_reason_the_recorder_writes_is_a_known_reason() -> None:
    reasons = set()
    for path in (SRC / "recorder").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "GapRecord":
                for kw in node.keywords:
                    if kw.arg == "reason" and isinstance(kw.value, ast.Constant):
                        reasons.add(kw.value.value)
    assert reasons, "the scan found no GapRecord(reason=...) in the recorder"
    assert reasons <= verify_core.GAP_REASONS
