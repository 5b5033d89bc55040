"""Identity from the TLS client certificate, over real mutual TLS (issue 8, item 6).

gunicorn (sync and gthread workers) hands the app its TLS socket
(``environ["gunicorn.socket"]``), whose ``getpeercert()`` has the verified client
certificate's subject parsed by OpenSSL: the WSGI middleware reads the CN from it. The
spoof from the issue, a subject ``/C=GB/O=Evil,CN=VICTIM/CN=ATTACKER``, identifies as
ATTACKER. uvicorn and hypercorn verify client certificates but give the app no trace of
them (no ASGI ``tls`` extension): there the certificate identity answers 401, which is
what docs/trust.md says.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from typing import TYPE_CHECKING

import httpx
import pytest
import trustme
import uvicorn

from srtm import identify_by_client_certificate
from srtm.middleware import ASGITrafficManager
from tests.conftest import free_port
from tests.middleware.apps import POLICY, make_asgi
from tests.middleware.servers import subprocess_server, wait_listening

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class Certificates:
    """A private CA, the server's certificate for 127.0.0.1, and client certificates."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.ca = trustme.CA(organization_name="srtm test CA")
        server = self.ca.issue_cert("127.0.0.1")
        self.ca_file = where / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.server_cert = where / "server.pem"
        self.server_key = where / "server.key"
        self.server_key.write_bytes(server.private_key_pem.bytes())
        self.server_cert.write_bytes(b"".join(p.bytes() for p in server.cert_chain_pems))

    def client(self, common_name: str | None, organization: str | None = None) -> ssl.SSLContext:
        """An SSL context trusting the CA and presenting a client certificate (or none)."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if common_name is not None:
            leaf = self.ca.issue_cert(
                "supplier@example.org", common_name=common_name, organization_name=organization
            )
            leaf.configure_cert(context)
        return context


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return Certificates(tmp_path)


def post(base: str, context: ssl.SSLContext) -> httpx.Response:
    # A claimed identity header that must be ignored: the certificate says who it is.
    headers = {"X-Service-User-ID": "VICTIM", "X-DUIS-Version": "4.1"}
    with httpx.Client(base_url=base, verify=context, headers=headers, timeout=20) as client:
        return client.post("/sr", content=b"<Request/>")


@pytest.mark.e2e
@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_gunicorn_gives_the_certificate_and_the_right_cn_wins(
    certs: Certificates, worker: str
) -> None:
    port = free_port()
    args = ["gunicorn", "-w", "1", "-k", worker, "-b", f"127.0.0.1:{port}"]
    args += ["--certfile", str(certs.server_cert), "--keyfile", str(certs.server_key)]
    args += ["--ca-certs", str(certs.ca_file), "--cert-reqs", str(int(ssl.CERT_REQUIRED))]
    args.append("tests.middleware.apps:wsgi")
    with subprocess_server(args, port, env={"SRTM_TEST_CERT": "1"}) as address:
        base = f"https://{address}"
        good = post(base, certs.client("good"))
        spoof = post(base, certs.client("ATTACKER", organization="Evil,CN=VICTIM"))
        with pytest.raises(httpx.TransportError):  # no certificate: no TLS session at all
            post(base, certs.client(None))
    assert good.status_code == 200
    assert good.json()["user"] == "good"
    assert spoof.status_code == 200
    assert spoof.json()["user"] == "ATTACKER"


@pytest.fixture
def uvicorn_mtls(certs: Certificates) -> Iterator[str]:
    """uvicorn requiring client certificates, the certificate identity behind it."""
    app = ASGITrafficManager(make_asgi().app, POLICY, identify=identify_by_client_certificate())
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ssl_certfile=str(certs.server_cert),
        ssl_keyfile=str(certs.server_key),
        ssl_ca_certs=str(certs.ca_file),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_listening(port)
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def hypercorn_mtls(certs: Certificates) -> Iterator[str]:
    """hypercorn requiring client certificates, the certificate identity behind it."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    app = ASGITrafficManager(make_asgi().app, POLICY, identify=identify_by_client_certificate())
    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.certfile = str(certs.server_cert)
    config.keyfile = str(certs.server_key)
    config.ca_certs = str(certs.ca_file)
    config.verify_mode = ssl.CERT_REQUIRED
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(
        target=lambda: loop.run_until_complete(serve(app, config, shutdown_trigger=stop.wait)),
        daemon=True,
    )
    thread.start()
    try:
        wait_listening(port)
        yield f"https://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=15)
        loop.close()


@pytest.mark.e2e
@pytest.mark.parametrize("server", ["uvicorn_mtls", "hypercorn_mtls"])
def test_asgi_servers_verify_but_do_not_hand_over_the_certificate(
    certs: Certificates, server: str, request: pytest.FixtureRequest
) -> None:
    base = request.getfixturevalue(server)
    response = post(base, certs.client("good"))
    assert response.status_code == 401
    assert response.json()["detail"] == "no TLS client certificate on this connection"
