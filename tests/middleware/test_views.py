"""What the adapters show an identify callable: the same view from ASGI and WSGI."""

from __future__ import annotations

from srtm.middleware.asgi import _view as asgi_view
from srtm.middleware.wsgi import _view as wsgi_view


def test_asgi_view_decodes_and_joins_repeated_headers() -> None:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/sr",
        "headers": [(b"x-service-user-id", b"u1"), (b"accept", b"a"), (b"Accept", b"b")],
        "extensions": {"tls": {"client_cert_name": "CN=u1"}},
    }
    view = asgi_view(scope)
    assert view.header("X-Service-User-ID") == "u1"
    assert view.header("accept") == "a, b"
    assert view.client_dn == "CN=u1"
    assert view.method == "POST"
    assert view.path == "/sr"


def test_wsgi_view_reads_environ_on_demand() -> None:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/sr",
        "HTTP_X_SERVICE_USER_ID": "u1",
        "HTTP_X_DUIS_VERSION": "4.1",
        "CONTENT_TYPE": "application/xml",
        "SSL_CLIENT_S_DN": "CN=u1",
    }
    view = wsgi_view(environ)
    assert view.header("x-service-user-id") == "u1"
    assert view.header("Content-Type") == "application/xml"
    assert view.header("missing") is None
    assert dict(view.headers) == {
        "x-service-user-id": "u1",
        "x-duis-version": "4.1",
        "content-type": "application/xml",
    }
    assert view.client_dn == "CN=u1"
