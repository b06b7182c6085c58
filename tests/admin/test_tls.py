"""Optional TLS: the admin server with a certificate and key, a client that trusts it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest

from policy_sidecar.admin import start_admin_server
from policy_sidecar.admin.v1 import applications_pb2 as apps
from policy_sidecar.admin.v1 import applications_pb2_grpc
from policy_sidecar.store.postgres import Pool

from .conftest import TOKENS
from .helpers import AUTH, fails

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def cert_and_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    d: Path = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return (d / "cert.pem").read_bytes(), (d / "key.pem").read_bytes()


async def test_tls(pool: Pool, cert_and_key: tuple[bytes, bytes]) -> None:
    cert, _key = cert_and_key
    server = await start_admin_server(pool=pool, tokens=TOKENS, tls=cert_and_key)
    address = f"127.0.0.1:{server.port}"
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert)
        async with grpc.aio.secure_channel(address, credentials) as channel:
            stub = applications_pb2_grpc.ApplicationServiceStub(channel)
            await stub.ListApplications(apps.ListApplicationsRequest(), metadata=AUTH)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = applications_pb2_grpc.ApplicationServiceStub(channel)
            exc = await fails(
                stub.ListApplications(apps.ListApplicationsRequest(), metadata=AUTH, timeout=5)
            )
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.server.stop(None)
