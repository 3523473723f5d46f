"""Liveness of the hub and its store, for load balancers and `portway doctor`."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from portway import __version__
from portway.api.auth import Ctx
from portway.api.problems import error_response, responses
from portway.api.schemas import Model

router = APIRouter(tags=["health"])


class Health(Model):
    status: Literal["ok"]
    store: Literal["ok"]
    version: str


@router.get("/healthz", response_model=Health, responses=responses(503))
async def healthz(ctx: Ctx) -> Health | JSONResponse:
    """200 when the hub is up and its store answers; 503 otherwise."""
    if not await ctx.db.ping():
        return error_response(503, "store_unreachable", "the hub cannot reach its store")
    return Health(status="ok", store="ok", version=__version__)
