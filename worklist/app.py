"""The web API and the worklist page, assembled: routers, the auth gate, headers and logging.

Every route that shows a patient's data needs a signed-in radiologist and writes an audit event
per study shown (who, what, when, from where). Query strings are never logged: a search may hold
a patient's name.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.exc import DataError
from starlette.routing import Match

from triage import __version__
from triage.home import secret_file
from triage.records.db import Database
from triage.records.security import SecurityLog
from triage.settings import Settings
from worklist import deps, labels
from worklist.auth import Authenticator
from worklist.images import RenderCache
from worklist.metrics import DatabaseCollector
from worklist.oidc_login import KEY_BYTES, KEY_FILE, LoginFlows
from worklist.operations import Cached, CachedCheck, queue_check
from worklist.routes import (
    admin,
    decisions,
    drift,
    oidc,
    operations,
    outcomes,
    recall,
    session,
    studies,
    worklist,
)
from worklist.routes import labels as label_routes
from worklist.routes import outbound as outbound_routes
from worklist.schemas import UID

logger = logging.getLogger(__name__)
_STATIC = Path(__file__).resolve().parent / "static"
_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'; object-src 'none'"
)
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def create_app(database: Database, settings: Settings) -> FastAPI:
    """Build the app over an open database."""
    # Interactive docs (docs_url, redoc_url) load their scripts from a CDN, which the CSP and a
    # hospital network refuse: off. The OpenAPI document stays at /openapi.json for clients.
    app = FastAPI(
        title="triage",
        version=__version__,
        description="Worklist, feedback and operations API of triage. Sign in at POST /api/session "
        "(or bring an OIDC bearer token) and send 'Authorization: Bearer <token>'.",
        docs_url=None,
        redoc_url=None,
    )
    metrics = CollectorRegistry(auto_describe=True)
    metrics.register(DatabaseCollector(database, settings))
    authenticator = Authenticator(settings, database)
    app.state.triage = deps.AppState(
        database=database,
        settings=settings,
        authenticator=authenticator,
        label_key=labels.label_key(settings.home),
        metrics=Cached(lambda: generate_latest(metrics), settings.metrics_cache_seconds),
        queue_ready=CachedCheck(queue_check(settings)),
        security=SecurityLog(database),
        renders=RenderCache(settings.api_image_cache_bytes),
        logins=LoginFlows(settings, authenticator.tokens, secret_file(settings.home, KEY_FILE, KEY_BYTES)),
    )
    routers = [
        module.router
        for module in (
            operations,
            session,
            oidc,
            worklist,
            studies,
            label_routes,
            admin,
            outbound_routes,
            decisions,
            drift,
            outcomes,
            recall,
        )
    ]
    for router in routers:
        app.include_router(router)
    app.state.api_routes = [
        route for router in routers for route in router.routes if isinstance(route, APIRoute)
    ]
    app.add_exception_handler(405, _method_not_allowed)
    app.add_exception_handler(DataError, _data_error)
    app.get("/", include_in_schema=False)(_page)
    app.get("/IHEInvokeImageDisplay", include_in_schema=False)(_invoke_image_display)
    app.mount("/static", StaticFiles(directory=_STATIC), name="static")
    app.middleware("http")(_refuse(refused_as_not_json))  # after the gate: a stranger gets 401 first
    deps.install_gate(app, app.state.api_routes)
    app.middleware("http")(_refuse(refused_as_cross_site))  # before the gate: cross-site learns nothing
    app.middleware("http")(_refuse(body_cap(settings.api_max_body_bytes)))  # before anything reads it
    app.middleware("http")(_headers_and_log)  # outermost: also wraps what the gate answers
    app.state.hsts = settings.api_tls_certificate is not None
    return app


def refused_as_cross_site(request: Request) -> tuple[int, str] | None:
    """Why an unsafe request is refused as cross-site (None: it may go on). Browsers send
    Sec-Fetch-Site and Origin with every unsafe request; a page on another site cannot make them
    name this server."""
    if request.method not in _UNSAFE_METHODS:
        return None
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return 403, f"cross-site request refused (Sec-Fetch-Site: {site})"
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
        return 403, "cross-origin request refused: Origin is not this server"
    return None


def body_cap(limit: int) -> Callable[[Request], tuple[int, str] | None]:
    """Refuse a body larger than ``limit`` by its Content-Length, before anything reads it; a
    chunked body (no length to judge by) is refused as such: every client of this API sends one."""

    def check(request: Request) -> tuple[int, str] | None:
        if "transfer-encoding" in request.headers:
            return 411, "send the request body with a Content-Length"
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return 413, f"request bodies are limited to {limit} bytes"
        return None

    return check


def refused_as_not_json(request: Request) -> tuple[int, str] | None:
    """An unsafe request's body must be JSON: an HTML form, the one cross-site request that needs
    no CORS preflight, cannot send application/json."""
    if request.method not in _UNSAFE_METHODS:
        return None
    has_body = int(request.headers.get("content-length") or 0) > 0 or "transfer-encoding" in request.headers
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if has_body and media_type != "application/json":
        return 415, "request bodies must be application/json"
    return None


Middleware = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


def _refuse(check: Callable[[Request], tuple[int, str] | None]) -> Middleware:
    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        refused = check(request)
        if refused is None:
            return await call_next(request)
        return JSONResponse({"detail": refused[1]}, status_code=refused[0])

    return middleware


async def _headers_and_log(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = _CSP
    if request.app.state.hsts:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    if request.url.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"
    logger.info(  # the path only: query strings may hold a patient's name
        "%s %s %d %.0f ms %s",
        request.method,
        request.url.path,
        response.status_code,
        (time.perf_counter() - started) * 1000,
        getattr(getattr(request.state, "caller", None), "name", "-"),
    )
    return response


def _method_not_allowed(request: Request, error: Exception) -> JSONResponse:
    # Starlette names only the first route's methods when several routes share a path.
    allowed: set[str] = set()
    for route in request.app.state.api_routes:
        if route.matches(request.scope)[0] != Match.NONE:
            allowed |= route.methods or set()
    return JSONResponse(
        {"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": ", ".join(sorted(allowed))}
    )


def _data_error(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": "a value is out of the range the database can store"}, status_code=422)


def _page() -> FileResponse:
    return FileResponse(_STATIC / "index.html")


def _invoke_image_display(request: Request) -> Response:
    """IHE Invoke Image Display's entry point (``requestType=STUDY&studyUID=...``), so that a PACS can
    add a "triage result" button: the page opens that study once the user has signed in. Only a
    redirect: it reads nothing, so it needs no session."""
    query = request.query_params
    uid = query.get("studyUID", "")
    if query.get("requestType") != "STUDY" or len(uid) > 64 or not re.fullmatch(UID, uid):
        return JSONResponse(
            {"detail": "requestType=STUDY and a studyUID (a DICOM UID) are required"}, status_code=400
        )
    return RedirectResponse(f"/#study-uid={uid}", status_code=303)
