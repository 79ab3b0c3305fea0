"""The wire protocol between agentd, collectord and operator clients: pure, no I/O.

- :mod:`protocol.messages` — agent <-> collector messages (frozen dataclasses);
- :mod:`protocol.operator` — operator client <-> collector messages;
- :mod:`protocol.codec` — msgpack frames <-> messages, strictly checked;
- :mod:`protocol.session` — sans-I/O sessions of the agent and the collector;
- :mod:`protocol.opsession` — sans-I/O sessions of the operator path;
- :mod:`protocol.errors` — :class:`ProtocolError` and its codes;
- :mod:`protocol.community_id` — the Community ID v1 flow hash (the agent's rows, the SQL
  function and the collector's attributions).

agent/ and collector/ share only this package.  docs/protocol.md is its reference.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AGENT_PATH", "OPERATOR_PATH", "SUPPORTED_VERSIONS", "ErrorCode", "ProtocolError"]

#: WebSocket paths on the collector's listener.
AGENT_PATH = "/agent"
OPERATOR_PATH = "/operator"


def __getattr__(name: str) -> Any:
    """The messages and errors on first use: importing :mod:`protocol.community_id` (the SQL
    function ``community_id_v1``, in every ``agent-cli query``) must not import the messages (~20 ms)."""
    if name == "SUPPORTED_VERSIONS":
        from .messages import SUPPORTED_VERSIONS

        return SUPPORTED_VERSIONS
    if name in ("ErrorCode", "ProtocolError"):
        from . import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'protocol' has no attribute {name!r}")
