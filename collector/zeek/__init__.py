"""The Zeek link: Broker JSON over Zeek's WebSocket API, the column typing rules, the link client."""
