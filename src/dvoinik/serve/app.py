"""The FastAPI app: one double, one store, the studio page and three APIs (studio, KoboldAI, OpenAI).

    app = create_app(Server(engine, store, settings, api_key="..."))

Every route reaches the model through `Engine` (one model, a bounded queue). With an API
key, every API route needs `Authorization: Bearer KEY` (or `X-Api-Key: KEY`), compared in
constant time; the studio's page and its static files carry no data and need none. A
blind test is taken through its own unguessable link, which opens that test only.

Without a key the server listens on loopback only, and that alone does not keep web
pages out: a page the writer visits can send requests to localhost, and with DNS
rebinding read the answers. So a keyless server answers only requests addressed to a
loopback name (the Host header), and no server accepts a state-changing request that
a page of another origin sent (the Origin header). Bodies beyond a limit derived from
`[serve] max_text_chars` are refused before they are read.
"""

from __future__ import annotations

import hmac
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from dvoinik.faults import DiskFullError, FileFault
from dvoinik.generation.decoding import GenerationError
from dvoinik.serve.engine import Aborted, Busy, Engine
from dvoinik.serve.store import Conflict, Store
from dvoinik.workspace import GenerateSettings, ServeSettings, Workspace

STATIC = Path(__file__).parent / "static"
# /api/extra/version is open as in KoboldCpp: it tells a client the server wants a key before it has one.
OPEN_PATHS = ("/", "/favicon.ico", "/healthz", "/api/extra/version")
OPEN_PREFIXES = ("/static/", "/blind/")  # the page and its files; a blind test's own link carries its token
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# On every response. The pages run their own scripts and styles only, and no other site may frame them
# (a framed studio could be clicked through by the page around it); a blind test's link never leaks as a Referer.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass
class Server:
    """Everything a request handler needs: the model's engine, the studio's store and the settings."""

    engine: Engine
    store: Store
    settings: ServeSettings = field(default_factory=ServeSettings)
    generate: GenerateSettings = field(default_factory=GenerateSettings)
    api_key: str | None = None
    workspace: Workspace | None = None
    run: str | None = None  # the run the double comes from (None for a double built in a test)
    loopback: bool = True  # bound to a loopback address only
    style: dict[str, float] = field(default_factory=dict)  # a style mix's weights as loaded (the default mix)
    in_flight: dict[str, Any] = field(default_factory=dict)  # KoboldAI requests in flight, by genkey
    interview: Any = None  # the interview frame ([interview], else detected from the corpus); None: the default

    @property
    def context_tokens(self) -> int:
        """The studio's budget for prompt + continuation."""
        double = self.engine.double
        model = double.trained_length or double.context_length or 2048
        return min(self.settings.context_tokens, model) if self.settings.context_tokens else model


def key_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so the time taken says nothing about how much of a guess was right."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.headers.get("x-api-key")


def host_name(host: str) -> str:
    """"localhost:5001" → "localhost"; "[::1]:5001" → "::1"."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def foreign_request(request: Request, keyless: bool) -> str | None:
    """Why a request must be refused as coming from somewhere it should not (None when it is fine)."""
    host = request.headers.get("host", "")
    if keyless and host_name(host).lower() not in LOOPBACK_NAMES:
        return f"this server answers requests for localhost only, not for {host!r} (start it with an API key " \
               "to serve other names)"
    origin = request.headers.get("origin")
    if request.method in UNSAFE_METHODS and origin is not None and origin.split("://", 1)[-1] != host:
        return f"a page from {origin} may not change anything here"
    return None


class BodyLimit:
    """ASGI middleware: refuse request bodies over `limit` bytes with 413, before they fill memory."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, send)
            return
        received, refused = 0, False

        async def counted_receive() -> dict:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # a chunked body, without Content-Length
                    refused = True
                    await self._refuse(scope, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted_receive, guarded_send)

    async def _refuse(self, scope: dict, send: Any) -> None:
        body = json.dumps(error_body(scope["path"], 413, f"the request body is over {self.limit} bytes "
                                     "([serve] max_text_chars sets the limit)", "request_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def error_body(path: str, status: int, message: str, kind: str) -> dict:
    """An error in the shape of the API the path belongs to (OpenAI, KoboldAI, or the studio's)."""
    if path.startswith("/v1/"):
        return {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return {"detail": {"msg": message, "type": kind}}


def _validation_message(exc: RequestValidationError) -> tuple[str, dict[str, list[str]]]:
    fields: dict[str, list[str]] = {}
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ())[1:]) or "body"
        fields.setdefault(where, []).append(error.get("msg", "invalid"))
    text = "; ".join(f"{name}: {', '.join(messages)}" for name, messages in fields.items())
    return text or "invalid request", fields


def create_app(server: Server) -> FastAPI:
    from dvoinik.serve import blind_api, interview_api, kobold, openai_api, studio_api

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        server.engine.start()
        yield
        server.engine.stop()
        server.store.close()

    # No Swagger UI or ReDoc: they load scripts from a CDN into the origin that holds the API key.
    # The API's description stays at /openapi.json, for any OpenAPI viewer.
    app = FastAPI(title="dvoinik", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.server = server
    # JSON may spell each Cyrillic letter as \uXXXX (6 bytes): room for the longest text so written, and more.
    app.add_middleware(BodyLimit, limit=6 * server.settings.max_text_chars + (1 << 20))

    @app.middleware("http")
    async def require_key(request: Request, call_next: Any) -> Any:
        path = request.url.path
        refusal = foreign_request(request, keyless=server.api_key is None)
        if refusal:
            return JSONResponse(error_body(path, 403, refusal, "forbidden"), status_code=403)
        open_path = path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or request.method == "OPTIONS"
        if server.api_key and not open_path and not key_matches(presented_key(request), server.api_key):
            return JSONResponse(error_body(path, 401, "a valid API key is needed (Authorization: Bearer KEY)",
                                           "authentication_error"), status_code=401)
        return await call_next(request)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy) -> JSONResponse:
        message = "Server is busy; please try again later."
        return JSONResponse(error_body(request.url.path, 503, message, "service_unavailable"), status_code=503,
                            headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(GenerationError)
    async def bad_generation(request: Request, exc: GenerationError) -> JSONResponse:
        return _invalid(request.url.path, str(exc))

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse(error_body(request.url.path, 409, str(exc), "conflict"), status_code=409)

    @app.exception_handler(FileFault)
    async def file_fault(request: Request, exc: FileFault) -> JSONResponse:
        # A full disk: 507, and nothing of the request was written (the page keeps its draft and retries).
        status = 507 if isinstance(exc, DiskFullError) else 500
        return JSONResponse(error_body(request.url.path, status, str(exc), "insufficient_storage" if status == 507
                                       else "server_error"), status_code=status)

    @app.exception_handler(Aborted)
    async def aborted(request: Request, exc: Aborted) -> JSONResponse:
        return JSONResponse(error_body(request.url.path, 409, str(exc), "aborted"), status_code=409)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        text, fields = _validation_message(exc)
        if request.url.path.startswith("/api/"):  # KoboldAI: {"detail": {field: [messages]}}
            return JSONResponse({"detail": fields or {"body": [text]}}, status_code=422)
        return _invalid(request.url.path, text)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse(error_body(request.url.path, exc.status_code, detail, "invalid_request_error"),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged by uvicorn; the client gets the shape of its API rather than a bare text page.
        return JSONResponse(error_body(request.url.path, 500, f"internal error: {type(exc).__name__}", "server_error"),
                            status_code=500)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"ok": True, "checkpoint": server.engine.double.checkpoint}

    @app.get("/", include_in_schema=False)
    async def studio_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(studio_api.router)
    app.include_router(blind_api.router)
    app.include_router(interview_api.router)
    app.include_router(kobold.router)
    app.include_router(openai_api.router)
    return app


def _invalid(path: str, message: str) -> JSONResponse:
    status = 400 if path.startswith("/v1/") else 422
    return JSONResponse(error_body(path, status, message, "invalid_request_error"), status_code=status)


def server_of(request: Request) -> Server:
    return request.app.state.server
