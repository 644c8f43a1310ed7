"""FastAPI dependencies that hand routes the long-lived parts built at startup (`Services`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request

from tonglu.web.services import Services

if TYPE_CHECKING:
    from tonglu.recorder.api import RecorderAPI
    from tonglu.transcribe.service import TranscriptService


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_recorder(request: Request) -> RecorderAPI:
    recorder = get_services(request).recorder
    if recorder is None:
        raise HTTPException(503, "录像服务未启动 (no recorder configured)")
    return recorder


def get_transcripts(request: Request) -> TranscriptService:
    transcripts = get_services(request).transcripts
    if transcripts is None:
        raise HTTPException(503, "转写服务未启动 (transcription service not configured)")
    return transcripts


ServicesDep = Annotated[Services, Depends(get_services)]
