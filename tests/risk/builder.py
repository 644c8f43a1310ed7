"""Manifest entries for risk-rule tests, built with the real hash chain (no I/O)."""

from __future__ import annotations

from typing import Any

from tonglu.evidence.manifest import HashChain, ManifestEntry
from tonglu.integrity.risk.facts import LiveView, SessionFacts, build_facts
from tonglu.integrity.timefmt import parse_iso

NS = 1_000_000_000
MIN = 60 * NS
HOUR = 3600 * NS
T0 = parse_iso("2026-12-04T10:00:00+08:00")  # a morning in Beijing


def start_body(**extra: Any) -> dict[str, Any]:
    return {"room": "讯问室1", "case_number": "A-1", "suspect": "张三", "interviewers": ["李四", "王五"],
            "reason": "讯问", "custody_out_iso": None,
            "sources": {"main": {"kind": "camera"}, "panorama": {"kind": "camera"}}, **extra}


class Session:
    def __init__(self, start_ns: int = T0, **facts: Any) -> None:
        self.chain = HashChain("s-risk")
        self.entries: list[ManifestEntry] = []
        self.views: list[LiveView] = []
        self.add("session_start", start_body(**facts), start_ns)

    def add(self, kind: str, body: dict[str, Any], at_ns: int) -> ManifestEntry:
        e = self.chain.append(kind, body, at_ns)
        self.entries.append(e)
        return e

    def brk(self, start_ns: int, end_ns: int | None, bid: str = "b1") -> None:
        self.add("break", {"break_id": bid, "reason_code": "rest", "start_ns": start_ns, "end_ns": None}, start_ns)
        if end_ns is not None:
            self.add("break", {"break_id": bid, "reason_code": "rest", "start_ns": start_ns, "end_ns": end_ns}, end_ns)

    def fact(self, name: str, value: Any, at_ns: int) -> None:
        self.add("note", {"topic": "risk_fact", "name": name, "value": value, "by": "t"}, at_ns)

    def segment(self, source: str, first_ns: int, last_ns: int, index: int = 0) -> None:
        self.add("segment", {"source": source, "track": "video", "media": "video", "codec": "vp8",
                             "container": "webm", "index": index, "key": f"k/{source}/{index}", "rtp_first": 0,
                             "rtp_last": 1, "clock_rate": 90000, "wall_first_ns": first_ns,
                             "wall_last_ns": last_ns, "frames": 1, "bytes": 1, "sha256": "0" * 64}, last_ns)

    def facts(self) -> SessionFacts:
        return build_facts("s-risk", self.entries, self.views)
