"""Operator routes for admin keys: pause and resume a job type or a channel (the panel's
operator view has the buttons; `pgcue pause|resume` and psql do the same)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.datastructures import State

from pgcue.api.access import caller_of, clean_param
from pgcue.api.problems import ApiProblem, not_found, responses
from pgcue.core.errors import UnknownJobType
from pgcue.core.queue import Queue
from pgcue.core.wire import Paused


def _admin_only(request: Request[Any, Any, Any]) -> None:
    if not caller_of(request).admin:
        raise ApiProblem(403, "admin-required", "Admin key required", "pausing and resuming needs an admin key")


def _changed(request: Request[Any, Any, Any]) -> None:
    """The fleet changed: the panel's next operator view reads it afresh, not its snapshot."""
    panel = getattr(request.app.state, "panel", None)
    if panel is not None:
        panel.snapshots.fleet_cache.forget("fleet")


class FleetController(Controller):
    path = "/api"
    tags = ("operators",)
    security = ({"bearer": []},)

    async def _type(self, request: Request[Any, Any, Any], queue: Queue, job_type: str, paused: bool) -> Paused:
        _admin_only(request)
        clean_param(job_type, "type")
        if len(job_type) > 63:
            raise not_found(f"no job type {job_type[:63]!r}…")
        try:
            await queue.fleet.set_type_paused(job_type, paused)
        except UnknownJobType:
            raise not_found(f"no job type {job_type!r} is registered (see `pgcue types`)") from None
        _changed(request)
        return Paused(paused=paused, type=job_type)

    async def _channel(self, request: Request[Any, Any, Any], queue: Queue, channel_id: str, paused: bool) -> Paused:
        _admin_only(request)
        clean_param(channel_id, "channelId")
        if len(channel_id) > 200:
            raise not_found("channel ids are at most 200 characters")
        reason = f"paused by {caller_of(request).user_id} (API)" if paused else ""
        await queue.fleet.set_channel_paused(channel_id, paused, reason)
        _changed(request)
        return Paused(paused=paused, channel_id=channel_id)

    @post(
        "/types/{job_type:str}/pause",
        status_code=200,
        summary="Pause claims of a job type across the fleet (admin keys); running jobs finish",
        responses=responses(400, 403, 404, d403="The key is not an admin key"),
    )
    async def pause_type(self, request: Request[Any, Any, Any], state: State, job_type: str) -> Paused:
        return await self._type(request, state.queue, job_type, True)

    @post(
        "/types/{job_type:str}/resume",
        status_code=200,
        summary="Resume claims of a paused job type (admin keys)",
        responses=responses(400, 403, 404, d403="The key is not an admin key"),
    )
    async def resume_type(self, request: Request[Any, Any, Any], state: State, job_type: str) -> Paused:
        return await self._type(request, state.queue, job_type, False)

    @post(
        "/channels/{channel_id:str}/pause",
        status_code=200,
        summary="Pause claims of every job of a channel (admin keys); running jobs finish",
        responses=responses(400, 403, 404, d403="The key is not an admin key"),
    )
    async def pause_channel(self, request: Request[Any, Any, Any], state: State, channel_id: str) -> Paused:
        return await self._channel(request, state.queue, channel_id, True)

    @post(
        "/channels/{channel_id:str}/resume",
        status_code=200,
        summary="Resume claims of a paused channel (admin keys)",
        responses=responses(400, 403, 404, d403="The key is not an admin key"),
    )
    async def resume_channel(self, request: Request[Any, Any, Any], state: State, channel_id: str) -> Paused:
        return await self._channel(request, state.queue, channel_id, False)
