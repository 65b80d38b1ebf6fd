"""A flow as a diagram: Mermaid (paste into any Mermaid viewer) or Graphviz DOT.

Step kinds have their own shapes (send: parallelogram, wait: hexagon, branch:
diamond, set: rectangle, handoff: subroutine/box3d, end: stadium/double circle), the
start is a filled circle pointing at ``start``, edges carry the event or condition
that takes them (plain ``next`` edges are unlabelled; a send's ``next`` taken only
when its message fails or is skipped says so) and timeouts are dashed. Labels
are escaped for each format, so accents, quotes, ``|``, ``<`` and ``>`` in step ids,
conditions or descriptions come out as written. Edges to steps that do not exist are
left out (``disparo check`` reports them).
"""

from __future__ import annotations

from engine.flow.model import Flow

_MERMAID_SHAPES = {
    "send": ('[/"', '"/]'),
    "wait": ('{{"', '"}}'),
    "branch": ('{"', '"}'),
    "set": ('["', '"]'),
    "handoff": ('[["', '"]]'),
    "end": ('(["', '"])'),
}
_DOT_SHAPES = {
    "send": "parallelogram",
    "wait": "hexagon",
    "branch": "diamond",
    "set": "box",
    "handoff": "box3d",
    "end": "doublecircle",
}
_MERMAID_ENTITIES = {
    "&": "#amp;",
    '"': "#quot;",
    "|": "#124;",
    "<": "#lt;",
    ">": "#gt;",
    "#": "#35;",
}


def _summary(flow: Flow, step_id: str) -> str:
    """What a step does, for its node: ``send whatsapp via sandbox``, ``wait 2h``."""
    step = flow.steps[step_id]
    kind = step.kind
    if step.send is not None:
        provider = flow.provider_for(step_id)
        via = f" via {provider}" if provider else ""
        return f"send {flow.channel_for(step_id)}{via}"
    if step.wait is not None:
        wait = step.wait
        if isinstance(wait, str | int | float):
            return f"wait {wait}"
        up_to = f" up to {wait.up_to}" if wait.up_to is not None else ""
        return f"wait for {wait.for_}{up_to}"
    if step.end is not None:
        return f"end: {step.end}"
    if step.handoff is not None and step.handoff.attendant:
        return f"handoff to {step.handoff.attendant}"
    return kind


def _next_label(flow: Flow, step_id: str) -> str:
    """When a step's ``next`` is taken: always (unlabelled), except from a send that
    waits for its ``on:`` events or timeout, which takes it only when not sent."""
    step = flow.steps[step_id]
    if step.send is None or not (step.on or step.timeout):
        return ""
    return ", ".join(event for event in ("failed", "skipped") if event not in (step.on or {}))


def _edges(flow: Flow, step_id: str) -> list[tuple[str, str, bool]]:
    """(label, target, dashed) for each edge leaving a step; a plain ``next`` is
    unlabelled."""
    out = []
    for label, target in flow.successors(step_id):
        if target not in flow.steps:
            continue
        dashed = label == "timeout" or label.startswith("timeout ")
        out.append((_next_label(flow, step_id) if label == "next" else label, target, dashed))
    return out


# ------------------------------------------------------------------ Mermaid


def _mermaid_text(text: str) -> str:
    escaped = "".join(_MERMAID_ENTITIES.get(c, c) for c in text)
    return escaped.replace("\n", "<br/>")


def to_mermaid(flow: Flow) -> str:
    """A Mermaid ``flowchart TD`` of the flow, one line per node and edge."""
    # Node ids are generated: `end` and other words are reserved in Mermaid.
    ids = {step_id: f"s{i}" for i, step_id in enumerate(flow.steps)}
    lines = ["flowchart TD", '    start_(("start"))']
    for step_id, node in ids.items():
        opening, closing = _MERMAID_SHAPES[flow.steps[step_id].kind]
        label = _mermaid_text(f"{step_id}\n{_summary(flow, step_id)}")
        lines.append(f"    {node}{opening}{label}{closing}")
    if flow.start in ids:
        lines.append(f"    start_ --> {ids[flow.start]}")
    for step_id, node in ids.items():
        for label, target, dashed in _edges(flow, step_id):
            arrow = "-.->" if dashed else "-->"
            text = f'|"{_mermaid_text(label)}"|' if label else ""
            lines.append(f"    {node} {arrow}{text} {ids[target]}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ DOT


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(flow: Flow) -> str:
    """A Graphviz ``digraph`` of the flow (render with ``dot -Tsvg``)."""
    lines = [
        f"digraph {_dot_text(flow.flow)} {{",
        "    rankdir=TB;",
        '    node [fontname="Helvetica"];',
        '    edge [fontname="Helvetica"];',
        '    "(start)" [shape=circle, style=filled, fillcolor=black, fontcolor=white, '
        'label="start"];',
    ]
    for step_id, step in flow.steps.items():
        label = _dot_text(f"{step_id}\n{_summary(flow, step_id)}")
        lines.append(f"    {_dot_text(step_id)} [shape={_DOT_SHAPES[step.kind]}, label={label}];")
    if flow.start in flow.steps:
        lines.append(f'    "(start)" -> {_dot_text(flow.start)};')
    for step_id in flow.steps:
        for label, target, dashed in _edges(flow, step_id):
            attrs = [f"label={_dot_text(label)}"] if label else []
            if dashed:
                attrs.append("style=dashed")
            suffix = f" [{', '.join(attrs)}]" if attrs else ""
            lines.append(f"    {_dot_text(step_id)} -> {_dot_text(target)}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"
