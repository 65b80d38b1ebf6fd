"""Fake vendor servers that enforce their documented contracts (aiohttp, 127.0.0.1)."""
