"""Runs the console beside `policy-sidecar admin` (`--ui-port`), in the same event loop."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

import grpc

from policy_sidecar.admin.server import AdminServer, Companion
from policy_sidecar.admin.settings import AdminSettings
from policy_sidecar.console.server import start_console

__all__ = ["console_companion"]

WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def console_companion(settings: AdminSettings) -> Companion:
    """The console on `settings.ui_port`, calling the admin server over loopback.

    With admin TLS the console serves HTTPS with the same certificate and dials the
    admin server as `localhost` (the certificate must name it).
    """

    async def start(admin: AdminServer) -> Callable[[], Awaitable[None]]:
        host = settings.ui_host or settings.host
        dial = "127.0.0.1" if settings.host in WILDCARDS else settings.host
        credentials = None
        context = None
        if settings.tls_cert and settings.tls_key:
            dial = "localhost"
            credentials = grpc.ssl_channel_credentials(root_certificates=settings.tls_cert)
            context = _server_context(settings.tls_cert, settings.tls_key)
        console = await start_console(
            admin_target=f"{dial}:{admin.port}",
            host=host,
            port=settings.ui_port,
            admin_credentials=credentials,
            ssl_context=context,
            secure_cookie=settings.ui_cookie_secure,
        )
        scheme = "https" if context else "http"
        print(f"console listening on {scheme}://{host}:{console.port}/", flush=True)
        return console.stop

    return start


def _server_context(cert: bytes, key: bytes) -> ssl.SSLContext:
    import os
    import tempfile

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # ssl loads chains from files only: write them to a private temp dir, then delete.
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        for path, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        context.load_cert_chain(cert_path, key_path)
    return context
