"""The ASGI entry point for server processes: settings from the environment."""

from __future__ import annotations

from fastapi import FastAPI

from pbx_cdr.app import create_app
from pbx_cdr.config import load_settings


def app_from_env() -> FastAPI:
    return create_app(load_settings())
