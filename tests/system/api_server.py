"""The real HTTP API served in a thread of the test process, exactly as `streamledger api` serves
it (uvicorn with the project's server configuration: uvloop, httptools, problem+json 400s)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import uvicorn

from api.app import create_app
from api.cli import server_config
from api.settings import ApiSettings
from streamledger.settings import Settings

API_START_TIMEOUT_S: Final = 60.0
API_STOP_TIMEOUT_S: Final = 30.0
START_POLL_S: Final = 0.05


@contextmanager
def serving_api(settings: Settings, api: ApiSettings, thread_name: str) -> Iterator[str]:
    """Serve the API of ``settings`` with the limits ``api`` until the block ends; yields its
    base URL. Fails the test if the server's thread dies or does not start in time."""
    server = uvicorn.Server(server_config(create_app(settings, api), api, log_level="warning"))
    thread = threading.Thread(target=server.run, name=thread_name, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + API_START_TIMEOUT_S
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
            time.sleep(START_POLL_S)
        yield f"http://127.0.0.1:{api.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=API_STOP_TIMEOUT_S)
