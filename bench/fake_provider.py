"""A minimal provider endpoint for benchmarks: reads the body, answers a JSON 200.

Run as its own process so it does not share the measured event loop:
    python bench/fake_provider.py PORT [--check-db PATH] [--check-every N]

Every answer carries a fresh gateway message id (``wamid.bench.<n>``), as a real
gateway does: the store keeps (provider, provider_message_id) unique.

``POST /webhooks/{provider}`` is the bare webhook receiver of bench/webhooks.py:
it reads the body and answers 200, nothing else.

``GET /stats`` answers what this process saw, so a benchmark can check it did the
work it claims: ``posts``, ``message_ids`` (distinct disparo message ids in the
bodies; 0 for the raw loop, whose bodies carry none), ``checked`` and
``not_sending``. With ``--check-db``, every N-th POST that names a message looks it
up in the engine's SQLite file (read-only, another process, so it only sees
committed rows) and counts it in ``not_sending`` unless it is stored as
``sending``: the outbox row must be durable before the POST leaves.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sqlite3

from aiohttp import web

PREFIX = b'{"messages": [{"id": "wamid.bench.'
SUFFIX = b'"}], "status": "accepted"}'


class Fake:
    def __init__(self, check_db: str | None, check_every: int) -> None:
        self.numbers = itertools.count(1)
        self.posts = 0
        self.bytes = 0
        self.ids: set[str] = set()
        self.checked = 0
        self.not_sending: list[str] = []
        self.check_every = check_every
        self.check_db = check_db
        self.db: sqlite3.Connection | None = None

    async def send(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts += 1
        self.bytes += len(body)
        if body[:14] == b'{"message_id":':
            message_id = json.loads(body)["message_id"]
            self.ids.add(message_id)
            if self.check_db and self.posts % self.check_every == 0:
                self._check(message_id)
        number = next(self.numbers)
        return web.Response(
            body=PREFIX + str(number).encode() + SUFFIX, content_type="application/json"
        )

    def _check(self, message_id: str) -> None:
        if self.db is None:
            # Opened on first use: a WAL file is readable once the engine has it open.
            assert self.check_db is not None
            self.db = sqlite3.connect(f"file:{self.check_db}?mode=ro", uri=True)
        row = self.db.execute("SELECT status FROM messages WHERE id = ?", (message_id,)).fetchone()
        self.checked += 1
        if row is None or row[0] != "sending":
            self.not_sending.append(f"{message_id}={row[0] if row else 'missing'}")

    async def webhook(self, request: web.Request) -> web.Response:
        """The bare webhook receiver bench/webhooks.py compares disparo with."""
        await request.read()
        self.posts += 1
        return web.Response(body=b'{"ok": true}', content_type="application/json")

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "posts": self.posts,
                "bytes": self.bytes,
                "message_ids": len(self.ids),
                "checked": self.checked,
                "not_sending": len(self.not_sending),
                "not_sending_sample": self.not_sending[:5],
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--check-db", help="the engine's SQLite file, checked read-only")
    parser.add_argument("--check-every", type=int, default=10)
    args = parser.parse_args()
    fake = Fake(args.check_db, args.check_every)
    app = web.Application()
    app.router.add_post("/send", fake.send)
    app.router.add_post("/webhooks/{provider}", fake.webhook)
    app.router.add_get("/stats", fake.stats)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
