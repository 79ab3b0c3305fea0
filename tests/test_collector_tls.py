"""collectord over TLS with certificates the test makes (trustme): pinned CA, client certificates, plaintext refused."""

from __future__ import annotations

import ssl

import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage

from tests._collector import Collectord, Operator, RawAgent, hello


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(directory / "server.pem"))
    server.private_key_pem.write_to_path(str(directory / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(directory / "server.crt"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    client_ca = trustme.CA()
    client_ca.cert_pem.write_to_path(str(directory / "client-ca.pem"))
    client = client_ca.issue_cert("agent-1.example")
    client.private_key_and_cert_chain_pem.write_to_path(str(directory / "client.pem"))
    return directory, ca, client_ca


def pinned(directory, *, client: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(directory / "ca.pem"))
    if client:
        context.load_cert_chain(str(directory / "client.pem"))
    return context


@pytest.fixture(scope="module")
def tls_collectord(pki, tmp_path_factory):
    directory, _, _ = pki
    config = f"""
[listen]
address = "0.0.0.0:0"
tls_cert = "{directory / "server.crt"}"
tls_key = "{directory / "server.key"}"
"""
    server = Collectord(tmp_path_factory.mktemp("tls"), config)
    server.start(listen="127.0.0.1:0")
    yield server
    server.close()


async def test_wss_with_the_pinned_ca(pki, tls_collectord):
    directory, _, _ = pki
    assert tls_collectord.url.startswith("wss://127.0.0.1:")
    agent = RawAgent(
        tls_collectord.url, hello("tls-1", secret=tls_collectord.enroll_secret), ssl_context=pinned(directory)
    )
    welcome = await agent.connect()
    seq = await agent.send_rows(0, 5)
    await agent.wait_ack(seq)
    await agent.close()
    assert welcome.node_key
    async with Operator(tls_collectord.url, tls_collectord.operator_token, ssl_context=pinned(directory)) as operator:
        assert [h.host_id for h in await operator.hosts()] == ["tls-1"]


async def test_a_server_certificate_from_another_ca_is_refused_by_the_agent(tls_collectord):
    other = trustme.CA()
    context = ssl.create_default_context()
    other.configure_trust(context)
    agent = RawAgent(tls_collectord.url, hello("tls-2", secret=tls_collectord.enroll_secret), ssl_context=context)
    with pytest.raises(ssl.SSLCertVerificationError):
        await agent.connect()


async def test_plaintext_to_a_tls_listener_gets_a_closed_connection(pki, tls_collectord):
    plain = tls_collectord.url.replace("wss://", "ws://")
    with pytest.raises((InvalidMessage, ConnectionError, OSError)):
        async with connect(plain + "/agent", open_timeout=10):
            pass
    # The listener is unharmed.
    directory, _, _ = pki
    agent = RawAgent(
        tls_collectord.url, hello("tls-3", secret=tls_collectord.enroll_secret), ssl_context=pinned(directory)
    )
    await agent.connect()
    await agent.close()


async def test_client_certificates_when_the_config_asks_for_them(pki, tmp_path):
    directory, _, _ = pki
    config = f"""
[listen]
address = "127.0.0.1:0"
tls_cert = "{directory / "server.crt"}"
tls_key = "{directory / "server.key"}"
client_ca = "{directory / "client-ca.pem"}"
"""
    server = Collectord(tmp_path, config).start()
    try:
        without = RawAgent(server.url, hello("mtls-1", secret=server.enroll_secret), ssl_context=pinned(directory))
        with pytest.raises((ssl.SSLError, ConnectionError, OSError, InvalidMessage)):
            await without.connect()
        with_cert = RawAgent(
            server.url, hello("mtls-2", secret=server.enroll_secret), ssl_context=pinned(directory, client=True)
        )
        welcome = await with_cert.connect()
        assert welcome.node_key
        await with_cert.close()
        assert server.stop() == 0
    finally:
        server.close()
