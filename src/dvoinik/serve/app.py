"""The FastAPI app: one double, one store, the studio page and three APIs (studio, KoboldAI, OpenAI).

    app = create_app(Server(engine, store, settings, api_key="..."))

Every route reaches the model through `Engine` (one model, a bounded queue). With an API
key, every API route needs `Authorization: Bearer KEY` (or `X-Api-Key: KEY`), compared in
constant time; the studio's page and its static files carry no data and need none. A
blind test is taken through its own unguessable link, which opens that test only.
"""

from __future__ import annotations

import hmac
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from dvoinik.generation import GenerationError
from dvoinik.serve.engine import Aborted, Busy, Engine
from dvoinik.serve.store import Store
from dvoinik.workspace import GenerateSettings, ServeSettings, Workspace

STATIC = Path(__file__).parent / "static"
# /api/extra/version is open as in KoboldCpp: it tells a client the server wants a key before it has one.
OPEN_PATHS = ("/", "/favicon.ico", "/healthz", "/api/extra/version")
OPEN_PREFIXES = ("/static/", "/blind/")  # the page and its files; a blind test's own link carries its token


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
    from dvoinik.serve import blind_api, kobold, openai_api, studio_api

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        server.engine.start()
        yield
        server.engine.stop()
        server.store.close()

    app = FastAPI(title="dvoinik", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.server = server

    @app.middleware("http")
    async def require_key(request: Request, call_next: Any) -> Any:
        path = request.url.path
        open_path = path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or request.method == "OPTIONS"
        if server.api_key and not open_path and not key_matches(presented_key(request), server.api_key):
            return JSONResponse(error_body(path, 401, "a valid API key is needed (Authorization: Bearer KEY)",
                                           "authentication_error"), status_code=401)
        return await call_next(request)

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy) -> JSONResponse:
        message = "Server is busy; please try again later."
        return JSONResponse(error_body(request.url.path, 503, message, "service_unavailable"), status_code=503,
                            headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(GenerationError)
    async def bad_generation(request: Request, exc: GenerationError) -> JSONResponse:
        return _invalid(request.url.path, str(exc))

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
    app.include_router(kobold.router)
    app.include_router(openai_api.router)
    return app


def _invalid(path: str, message: str) -> JSONResponse:
    status = 400 if path.startswith("/v1/") else 422
    return JSONResponse(error_body(path, status, message, "invalid_request_error"), status_code=status)


def server_of(request: Request) -> Server:
    return request.app.state.server
