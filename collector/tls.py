"""TLS for the listener: a server context from the config's certificate, key and client CA."""

from __future__ import annotations

import ipaddress
import ssl

from .config import ConfigError, ListenConfig

__all__ = ["is_loopback_peer", "server_context"]


def server_context(listen: ListenConfig) -> ssl.SSLContext | None:
    """The SSL context for ``listen`` (None for plaintext); ConfigError naming the key if a file is unusable."""
    if not listen.tls:
        return None
    assert listen.tls_cert is not None and listen.tls_key is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(listen.tls_cert, listen.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"listen.tls_cert: cannot load {listen.tls_cert} with key {listen.tls_key}: {exc}") from None
    if listen.client_ca is not None:
        try:
            context.load_verify_locations(cafile=listen.client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"listen.client_ca: cannot load {listen.client_ca}: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def is_loopback_peer(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False
