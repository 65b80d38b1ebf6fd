"""A minimal provider endpoint for benchmarks: reads the body, answers a fixed JSON 200.

Run as its own process so it does not share the measured event loop:
    python bench/fake_provider.py PORT
"""

from __future__ import annotations

import sys

from aiohttp import web

RESPONSE = (
    b'{"messages": [{"id": "wamid.HBgLNTUxMTk5OTk5ODg4OBUCABIYFjNFQjBDNzM1"}],'
    b' "status": "accepted"}'
)


async def send(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=RESPONSE, content_type="application/json")


def main() -> None:
    app = web.Application()
    app.router.add_post("/send", send)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
