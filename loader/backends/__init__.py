"""Backends: the embedded local one (SQLite), its HTTP server, and the remote client."""
