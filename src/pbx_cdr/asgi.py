"""The ASGI entry point for server processes: settings from the environment."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from pbx_cdr.app import create_app
from pbx_cdr.config import load_settings
from pbx_cdr.memory import fix_mmap_threshold


def app_from_env() -> FastAPI:
    fix_mmap_threshold()  # large buffers back to the system when freed (pbx_cdr/memory.py)
    app = create_app(load_settings())
    # What exists now (modules, the app, compiled statements) lives as long as the process: moved
    # out of the collector's reach, it is not scanned again by every full collection.
    gc.collect()
    gc.freeze()
    return app
