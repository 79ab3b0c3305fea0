"""agentd's uplink to collectord: a durable, bounded result queue and the WebSocket client.

- :mod:`agent.uplink.settings` — the config's ``collector`` section, typed;
- :mod:`agent.uplink.queue` — the uplink queue in the state database (sequence numbers,
  bounds, drops, acknowledgements);
- :mod:`agent.uplink.subscriptions` — the collector's subscriptions, persisted, on the schedule;
- :mod:`agent.uplink.client` — the connection: sessions, failover, backoff, sending, orders;
- :mod:`agent.uplink.component` — the agentd component that puts them together.

The protocol itself is :mod:`protocol` (shared with collectord); nothing here imports collector/.
"""
