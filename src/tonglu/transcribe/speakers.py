"""Who is speaking: a track's source decides it (pure).

Convention (REQUIREMENTS 13: interviewer and suspect microphones are separate tracks):
- source ``main`` (the close-up camera facing the suspect; its microphone hears the suspect)
  -> 被讯问人 suspect, answers (答);
- source ``panorama`` (room camera near the interviewers' desk) -> 讯问人 interviewer, questions (问);
- ``remote-<id>`` -> the role and name from that participant's ``participant`` manifest entry
  (prosecutor 检察官, judge 法官, lawyer 律师, ...); prosecutors and judges ask (问);
- a source in ``session_start.sources`` may set ``"speaker_role"`` (one of ROLE_LABELS) to override.
- a hearing (``session_start.kind == "hearing"``, 速裁庭审): the room's sources are the defendant
  (被告人, answers), remote participants go by the court's titles (审判员, 公诉人, 辩护律师, 书记员).
"""

from __future__ import annotations

from typing import Any

ROLE_LABELS = {
    "interviewer": "讯问人",
    "suspect": "被讯问人",
    "prosecutor": "检察官",
    "judge": "法官",
    "lawyer": "律师",
    "defence": "辩护人",
    "clerk": "书记员",
    "interpreter": "翻译人员",
    "witness": "证人",
    "guardian": "法定代理人",
    "participant": "参与人",
    "defendant": "被告人",
}
HEARING_LABELS = {**ROLE_LABELS, "judge": "审判员", "prosecutor": "公诉人", "lawyer": "辩护律师",
                  "interpreter": "翻译"}
QUESTION_ROLES = frozenset({"interviewer", "prosecutor", "judge"})
ANSWER_ROLES = frozenset({"suspect", "defendant"})
DEFAULT_SOURCE_ROLES = {"main": "suspect", "panorama": "interviewer"}


def speaker_for(
    source: str, session_start: dict[str, Any] | None, participants: dict[str, dict[str, Any]] | None = None
) -> dict[str, str]:
    """{"role", "label", "qa"} for a source; qa is 问, 答 or "" (shown with the label)."""
    sources = (session_start or {}).get("sources") or {}
    hearing = (session_start or {}).get("kind") == "hearing"
    labels = HEARING_LABELS if hearing else ROLE_LABELS
    declared = sources.get(source) if isinstance(sources, dict) else None
    role = ""
    name = ""
    if isinstance(declared, dict) and declared.get("speaker_role") in ROLE_LABELS:
        role = str(declared["speaker_role"])
    elif hearing and not source.startswith("remote-"):
        role = "defendant"
    elif source in DEFAULT_SOURCE_ROLES:
        role = DEFAULT_SOURCE_ROLES[source]
    elif participants and source in participants:
        p = participants[source]
        role = str(p.get("role") or "participant")
        name = str(p.get("name") or "")
    elif source.startswith("remote-"):
        role = "participant"
    label = labels.get(role, role or source)
    if name:
        label = f"{label} {name}"
    if role in ("suspect", "defendant") and session_start and session_start.get("suspect"):
        label = f"{label} {session_start['suspect']}"
    qa = "问" if role in QUESTION_ROLES else "答" if role in ANSWER_ROLES else ""
    return {"role": role, "label": label, "qa": qa}
