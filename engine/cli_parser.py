"""The `disparo` command line: its commands, their flags and the help they print.
Running them is `engine.cli`'s."""

from __future__ import annotations

import argparse

DEFAULT_CONFIG = "config/disparo.yaml"
EXIT_CODES = """exit codes:
  0  success
  1  a problem in your input (flow, config, CSV, contact or events file)
  2  usage error (a missing argument, a flag value the command cannot take)
  3  the store or a provider is unreachable
  4  the database has migrations pending: run `disparo migrate`
  70  a bug in disparo (its trace is printed, secrets and phone numbers hidden)
  130  interrupted (Ctrl-C)"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="disparo",
        description="Outbound orchestration for conversational bots. "
        "`disparo COMMAND --help` tells more about each command.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--log-format", choices=("text", "json"), default=None, help="log line format")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # `disparo serve --log-format json` as well as `disparo --log-format json serve`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=argparse.SUPPRESS,
        help="log line format (text, or JSON lines)",
    )

    s = sub.add_parser(
        "serve",
        parents=[common],
        help="API + webhooks + dispatcher + scheduler in one process",
        description="Serve the HTTP API and the providers' webhooks, and send what is due "
        "(messages, timers, triggers) until SIGTERM or Ctrl-C; SIGHUP reads the flow files "
        "and the template catalogue again. Run `disparo migrate` first.",
    )
    _config(s)
    s.add_argument("--host", help="address to listen on (default: server.host)")
    s.add_argument("--port", type=_port, help="TCP port, 1-65535 (default: server.port)")

    c = sub.add_parser(
        "check",
        parents=[common],
        help="validate flow files and the config",
        description="Validate the config, the template catalogue and the flow files "
        "against each other and the providers; print each problem as "
        "`file:line:col: message`. Exit 0 when clean, 1 when there is a problem.",
    )
    c.add_argument("paths", nargs="*", help="flow files or folders (default: the config's flows)")
    _config(c)

    m = sub.add_parser(
        "simulate",
        parents=[common],
        help="dry-run a flow on a virtual clock; sends nothing",
        description="Run FLOW for the contact of --contact on a virtual clock: every step, "
        "rule decision (with its reason) and exact provider payload is printed, nothing is "
        "sent or stored. Exit 1 when a message could not be sent or the run broke.",
    )
    m.add_argument("flow", help="a flow name or a flow file")
    m.add_argument("--contact", required=True, help="JSON or YAML file with the contact")
    m.add_argument("--events", help="JSON Lines of events to inject")
    m.add_argument("--at", help="start time (ISO-8601; default: the contact file's `now` or now)")
    m.add_argument("--until", help="stop time (ISO-8601; default: 7 days after the start)")
    m.add_argument(
        "--json", action="store_true", help="JSON Lines, one object per thing that happens"
    )
    _config(m)

    sub.add_parser(
        "schema",
        parents=[common],
        help="print the JSON Schema of flow files",
        description="Print the JSON Schema of flow files, for editors that speak "
        "yaml-language-server: disparo schema > flows/flow.schema.json",
    )

    sub.add_parser(
        "openapi",
        parents=[common],
        help="print the OpenAPI 3.1 description of the HTTP API",
        description="Print the OpenAPI 3.1 description of `disparo serve`'s HTTP API (also "
        "served at GET /v1/openapi.json), to generate a client or import the API into "
        "Postman, Insomnia or Swagger UI: disparo openapi > disparo-openapi.json",
    )

    g = sub.add_parser(
        "graph",
        parents=[common],
        help="print a flow as a diagram",
        description="Print FLOW's steps and transitions as a Mermaid flowchart (paste it "
        "into any Mermaid viewer) or a Graphviz dot graph.",
    )
    g.add_argument("flow", help="a flow file, or a flow name from the config's flows")
    g.add_argument(
        "--format",
        choices=("mermaid", "dot"),
        default="mermaid",
        help="diagram language (default: %(default)s)",
    )
    _config(g)

    t = sub.add_parser(
        "trigger",
        parents=[common],
        help="start a flow for every contact of a CSV file; idempotent per row",
        description="Check the whole CSV file (every problem is reported and nothing is "
        "started if there is one), then start FLOW for each row. Rerunning the same file "
        "starts nothing new. The runs are durably created in the store; the serving "
        "process (`disparo serve`) sends their messages, this command sends nothing.",
    )
    t.add_argument("flow", help="a flow name from the config's flows")
    t.add_argument("--contacts", required=True, help="CSV file, one contact per row")
    _config(t)

    w = sub.add_parser(
        "why",
        parents=[common],
        help="the decisions and events behind what was (not) sent",
        description="List the rule decisions and events recorded for CONTACT, newest "
        "first, with the time in the contact's zone, the run and the step. Reads the store "
        "only: safe beside `disparo serve`.",
    )
    w.add_argument("contact", help="the contact id")
    w.add_argument("--flow", help="only the events of this flow and its runs")
    w.add_argument("--limit", type=_limit, default=50, help="the newest N events (default 50)")
    w.add_argument("--json", action="store_true", help="JSON Lines, one object per event")
    _config(w)

    pg = sub.add_parser(
        "purge",
        parents=[common],
        help="delete what finished longer ago than retention.keep, now",
        description="Delete finished runs (with their messages and events), events of no "
        "run, unmatched status reports and cron firings older than `retention.keep` of the "
        "config (or --keep), in batches, until none is left. `disparo serve` does the same "
        "every `retention.every`; this is for a one-off clean-up or a cron job.",
    )
    pg.add_argument("--keep", help="keep this much instead of retention.keep (e.g. 90d)")
    pg.add_argument(
        "--dry-run", action="store_true", help="count what would be deleted; delete nothing"
    )
    _config(pg)

    x = sub.add_parser(
        "export",
        parents=[common],
        help="print everything kept about a contact as JSON (LGPD)",
        description="Print one JSON document with the contact, every run of theirs that "
        "retention keeps (messages with the texts sent, and each run's history) and their "
        "own events: a copy for a person who asked for their data.",
    )
    x.add_argument("contact", help="the contact id")
    _config(x)

    e = sub.add_parser(
        "erase",
        parents=[common],
        help="delete contacts and everything kept about them (LGPD)",
        description="Delete each contact, every run of theirs (open or finished) with its "
        "messages and events, their own events and the due work of those runs, one "
        "transaction per contact. A contact that opted out keeps a bare row (id and opt-out) "
        "so the opt-out still holds, unless --forget-opt-out. This cannot be undone.",
    )
    e.add_argument("contacts", nargs="+", metavar="CONTACT", help="the contact id(s)")
    e.add_argument(
        "--forget-opt-out",
        action="store_true",
        help="delete an opted-out contact's row too (the opt-out is then forgotten)",
    )
    e.add_argument("--yes", action="store_true", help="erase: without it nothing is deleted")
    _config(e)

    st = sub.add_parser(
        "status",
        parents=[common],
        help="what is queued and running now: due work, open runs, ambiguous messages",
        description="Print the due work by kind (due, leased, later, how long the oldest "
        "has waited), the open runs by flow and the number of ambiguous messages. Reads "
        "the store only (and only `storage` from the config): safe beside `disparo serve`.",
    )
    st.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    _config(st)

    mg = sub.add_parser(
        "migrate",
        parents=[common],
        help="apply storage migrations",
        description="Create the database or bring it up to date. Reads only `storage` from "
        "the config; several at once are safe on PostgreSQL.",
    )
    _config(mg)
    return p


def _config(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--config", default=DEFAULT_CONFIG, help="the config file (default: %(default)s)"
    )


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port; give a number, 1-65535")
    return int(text)


def _limit(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of events; give 1 to 1000000")
    return int(text)
