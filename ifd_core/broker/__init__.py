"""Brokers: the interface real-time trading talks to, the paper broker, Interactive Brokers,
and the loopback TWS-protocol test server."""
