"""The app factory: settings in, a FastAPI application out. No globals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from pbx_cdr import __version__
from pbx_cdr.api import openapi_doc
from pbx_cdr.api.deps import Services
from pbx_cdr.api.direct_routes import DirectRoutes
from pbx_cdr.api.middleware import LimitsMiddleware, allowed_methods
from pbx_cdr.api.responses import error_response
from pbx_cdr.api.routes import cdr, freeswitch, health, public, recordings
from pbx_cdr.api.schemas import CallBatchIn, CallIn
from pbx_cdr.clock import Clock, SystemClock
from pbx_cdr.config import Settings
from pbx_cdr.db.engine import make_engine
from pbx_cdr.errors import ApiError, ServiceUnavailable, ValidationFailed
from pbx_cdr.observability import routes as observability_routes
from pbx_cdr.observability.middleware import ObservabilityMiddleware
from pbx_cdr.storage import Storage, storage_from_settings

HTTP_MESSAGES = {404: "Not found.", 405: "Method not allowed."}


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    engine: Engine | None = None,
    storage: Storage | None = None,
) -> FastAPI:
    """Build the application for ``settings`` (already resolved: see ``config.load_settings``)."""
    app = FastAPI(
        lifespan=_lifespan,
        title="pbx-cdr",
        version=__version__,
        description="Call detail records and recordings of a FreeSWITCH call centre.",
        # Metrics (/metrics) and structured logs are our own (pbx_cdr.observability); FastAPI's
        # OpenTelemetry hooks looked up their configuration on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = Services(
        settings=settings,
        engine=engine
        or make_engine(
            settings.database_url,
            sqlite_synchronous=settings.sqlite_synchronous,
            pool_size=settings.db_pool_size,
        ),
        clock=clock or SystemClock(),
        storage=storage or storage_from_settings(settings),
    )
    _install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(cdr.router)
    app.include_router(freeswitch.router)
    app.include_router(recordings.router)
    app.include_router(public.router)
    if settings.metrics_enabled:
        app.include_router(observability_routes.router)
    # Innermost of ours: the list and JSON ingest go straight to their endpoints (api/direct_routes.py).
    app.add_middleware(DirectRoutes, routes=cdr.direct_routes())
    app.add_middleware(LimitsMiddleware, settings=settings)
    app.add_middleware(ObservabilityMiddleware)  # added last: outermost, sees every answer
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    services: Services = app.state.services
    await services.close()  # PostgreSQL's async connections belong to this event loop


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        errors: dict[str, list[str]] = {}
        for err in exc.errors():
            field = ".".join(str(p) for p in err.get("loc", ())[1:]) or "body"
            errors.setdefault(field, []).append(str(err.get("msg", "is invalid")))
        return error_response(ValidationFailed(errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = HTTP_MESSAGES.get(exc.status_code, str(exc.detail))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only the first matching route's
            headers["Allow"] = allowed_methods(request.app.routes, request.scope)
        return error_response(_status_error(exc.status_code, message, headers))

    @app.exception_handler(OperationalError)
    async def _db_lost(_request: Request, _exc: OperationalError) -> Response:
        return error_response(ServiceUnavailable())


def _status_error(status: int, message: str, headers: dict[str, str]) -> ApiError:
    error = ApiError(message, headers=headers)
    error.status_code = status
    return error


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (CallIn, CallBatchIn):
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in model_schema.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components[model.__name__] = model_schema
    # FastAPI adds its own 422 schema to routes with parameters; ours is the Laravel shape.
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            response = operation.get("responses", {}).get("422")
            if response and "HTTPValidationError" in str(response):
                response["content"] = {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ValidationErrorBody"}}
                }
    openapi_doc.complete(schema)
    app.openapi_schema = schema
    return schema
