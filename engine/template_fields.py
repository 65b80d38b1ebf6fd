"""`disparo check`: a field of `contact` or `run` that neither ever has.

``contact`` and ``run`` have fixed fields (``engine.render``), so
``{{ contact.primeiro_nome }}`` fails every send, and ``contact.cpf is defined`` is
always false: a typo, or a key of the contact's context written one level too high.
Only those two are checked; ``context`` keys are the contact's own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from jinja2 import Environment, nodes

from engine.flow.problems import did_you_mean

FIELDS = {
    "contact": ("id", "phone", "email", "name", "first_name", "tags", "context", "timezone"),
    "run": ("id", "flow", "step", "vars"),
}
# What a Portuguese-speaking designer writes for them.
_PT = {"nome": "name", "primeiro_nome": "first_name", "telefone": "phone", "celular": "phone"}
_PARSER = Environment()  # parsing only: the sandbox compiles and renders


def unknown_fields(source: str, *, expression: bool = False) -> Iterator[tuple[int, str]]:
    """(line of ``source``, problem) for each ``contact.x`` or ``run.x`` no contact or
    run has. ``source`` must compile; ``expression`` for `when:`, `audience:`, `unless:`."""
    tree = _PARSER.parse("{{ (" + source + "\n) }}" if expression else source)
    # `{% set contact = ... %}` or a loop variable named so: another value, not checked.
    shadowed = {n.name for n in tree.find_all(nodes.Name) if n.ctx != "load"}
    seen: set[tuple[str, str]] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        name, field = _field(node)
        if name is None or name in shadowed or field in FIELDS[name] or hasattr(dict, field):
            continue
        if (name, field) in seen:
            continue
        seen.add((name, field))
        known = ", ".join(FIELDS[name])
        hint = did_you_mean(field, FIELDS[name])
        if name == "contact" and field in _PT:
            hint = f"; did you mean `{_PT[field]}`?"
        if not hint and name == "contact":
            hint = f"; a key of the contact's context is `contact.context.{field}`"
        yield node.lineno, f"`{name}.{field}` is not a field of the {name} ({known}){hint}"


# `{ contact.first_name }}`, `{context.valor}`: a variable with a brace missing.
_HALF_VARIABLE = re.compile(r"\{+\s*((?:contact|context|run|now)\b[^{}\n]*?)\s*\}+")


def stray_braces(source: str) -> Iterator[tuple[int, str]]:
    """(line of ``source``, problem) for braces sent as written: a variable missing a
    brace, or a ``}}`` that closes nothing. ``source`` must compile."""
    for data in _PARSER.parse(source).find_all(nodes.TemplateData):
        text = data.data
        if "{{" in text or "{%" in text:
            continue  # `{% raw %}` text: written as is on purpose
        for found in _HALF_VARIABLE.finditer(text):
            line = data.lineno + text.count("\n", 0, found.start())
            yield (
                line,
                (
                    f"`{found.group(0)}` would be sent as written; a variable is written "
                    f"`{{{{ {found.group(1)} }}}}`"
                ),
            )
        if not _HALF_VARIABLE.search(text) and "}}" in text:
            line = data.lineno + text.count("\n", 0, text.index("}}"))
            yield line, "`}}` closes no `{{` and would be sent as written"


def _field(node: nodes.Getattr | nodes.Getitem) -> tuple[str | None, str]:
    target = node.node
    if not isinstance(target, nodes.Name) or target.name not in FIELDS:
        return None, ""
    if isinstance(node, nodes.Getattr):
        return target.name, node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return target.name, node.arg.value
    return None, ""
