from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from corral.httpclient import Pool
from tests.httpclient.rawserver import Handler, RawServer, keep_answering
from tests.support.loops import pytest_asyncio_loop_factories  # noqa: F401 - the hook, shared


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    """``await serve(handler)``: a started RawServer, stopped when the test ends."""
    servers: list[RawServer] = []

    async def start(handler: Handler, ssl_context: ssl.SSLContext | None = None, port: int = 0) -> RawServer:
        server = RawServer(handler, ssl_context)
        servers.append(server)
        return await server.start(port)

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def pool() -> AsyncIterator[Callable[..., Pool]]:
    """``pool(base_url, **options)``: a Pool with small timeouts, closed when the test ends."""
    pools: list[Pool] = []

    def make(base_url: str, **options: Any) -> Pool:
        settings: dict[str, Any] = {"max_connections": 4, "connect_timeout": 2.0, "read_timeout": 2.0}
        created = Pool(base_url, **(settings | options))
        pools.append(created)
        return created

    yield make
    for created in pools:
        await created.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)


@pytest.fixture
async def tls_server(serve, certificate) -> RawServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return await serve(keep_answering, context)
