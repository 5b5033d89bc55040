"""Django's ASGI handler under uvicorn: lifespan completed and the gate closed by srtm."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import free_port
from tests.middleware.servers import subprocess_server

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.e2e
def test_django_asgi_under_uvicorn_closes_the_gate_at_shutdown(tmp_path: Path) -> None:
    marker = tmp_path / "closed"
    port = free_port()
    # --lifespan on: uvicorn refuses to start when the app fails lifespan, as Django's
    # ASGIHandler alone does; srtm answers it instead.
    args = ["uvicorn", "--port", str(port), "--lifespan", "on", "--log-level", "warning"]
    args.append("tests.middleware.django_app:app")
    with (
        subprocess_server(args, port, env={"SRTM_TEST_MARKER": str(marker)}) as address,
        httpx.Client(base_url=f"http://{address}") as client,
    ):
        ok = client.post("/sr", headers={"X-Service-User-ID": "u1"})
        missing = client.post("/sr")
        assert not marker.exists()  # the gate is still open while serving
    # Leaving the block sent SIGTERM and waited for uvicorn: shutdown ran lifespan.
    assert ok.status_code == 200
    assert ok.json() == {"user": "u1"}
    assert missing.status_code == 401
    assert marker.read_text() == "closed\n"
