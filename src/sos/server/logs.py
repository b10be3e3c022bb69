"""``GET /api/v1/services/{name}/logs``: a service's logs from its backend, streamed.

NDJSON (one ``LogRecord`` per line) by default; Server-Sent Events when the client sends
``Accept: text/event-stream`` (the web UI's ``EventSource``). ``follow=true`` keeps the
stream open for new lines until the client goes away.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from sos.models import LogRecord
from sos.runtime.base import Backend
from sos.server.auth import Principal
from sos.server.core import ControlPlane
from sos.server.errors import ERROR_RESPONSES
from sos.server.routes import ServiceName
from sos.server.visibility import can_read

__all__ = ["router"]

router = APIRouter(tags=["services"], responses=ERROR_RESPONSES)


@router.get(
    "/services/{name}/logs",
    summary="Stream a service's logs (NDJSON, or SSE with Accept: text/event-stream)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "One LogRecord per line",
            "content": {"application/x-ndjson": {}, "text/event-stream": {}},
        }
    },
)
async def logs(
    request: Request,
    token: Principal,
    name: ServiceName,
    revision: Annotated[
        str | None, Query(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    ] = None,
    tail: Annotated[int, Query(ge=0, le=100_000)] = 100,
    follow: bool = False,
) -> StreamingResponse:
    control: ControlPlane = request.app.state.sos.control
    backend: Backend = request.app.state.sos.backend
    service = await run_in_threadpool(control.store.get_service, name)
    can_read(token, service.team, f"the logs of service {name!r}")
    rev_id = None
    if revision is not None:
        rev_id = (await run_in_threadpool(control.get_revision, name, revision)).id
    sse = "text/event-stream" in request.headers.get("accept", "")

    async def lines() -> AsyncIterator[str]:
        async for line in backend.logs(name, rev_id, tail=tail, follow=follow):
            record = LogRecord(
                at=line.at,
                service=line.service,
                revision=line.revision,
                instance=line.instance,
                stream=line.stream,
                text=line.text,
            ).model_dump_json()
            yield f"data: {record}\n\n" if sse else record + "\n"

    return StreamingResponse(
        lines(),
        media_type="text/event-stream" if sse else "application/x-ndjson",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
