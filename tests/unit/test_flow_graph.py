"""`disparo graph`: flows as Mermaid and DOT diagrams."""

from __future__ import annotations

from engine.flow.graph import to_dot, to_mermaid
from engine.flow.loader import load_flow_text
from engine.flow.model import Flow

FLOW = """\
flow: cobranca
defaults: {provider: sandbox}
start: lembrete
steps:
  lembrete:
    send:
      text: oi
      buttons: [{id: pagar, title: Pagar}]
    on: {button.pagar: decide, read: espera}
    timeout: {after: 2h, goto: sms}
  espera:
    wait: {for: reply, up_to: 1d}
    on: {timeout: end}
  sms:
    send: {channel: sms, text: oi}
    next: atendimento
  decide:
    branch:
      - when: "context.valor > 1000 and context.tipo == \\"cartão\\" or context.x | length"
        goto: atendimento
      - else: marca
  marca:
    set: {context.pago: true}
    next: end
  atendimento:
    handoff: {attendant: João}
    next: end
  end:
    end: completed
"""


def flow() -> Flow:
    return load_flow_text(FLOW, "cobranca.yaml").flow


def test_mermaid_draws_each_kind_with_its_shape_and_marks_the_start() -> None:
    lines = to_mermaid(flow()).splitlines()
    assert lines[0] == "flowchart TD"
    assert '    start_(("start"))' in lines
    assert "    start_ --> s0" in lines
    assert '    s0[/"lembrete<br/>send whatsapp via sandbox"/]' in lines
    assert '    s1{{"espera<br/>wait for reply up to 1d"}}' in lines
    assert '    s3{"decide<br/>branch"}' in lines
    assert '    s4["marca<br/>set"]' in lines
    assert '    s5[["atendimento<br/>handoff to João"]]' in lines
    # a step named `end` is a reserved word in Mermaid: node ids are generated
    assert '    s6(["end<br/>end: completed"])' in lines


def test_mermaid_labels_edges_dashes_timeouts_and_escapes_quotes_and_bars() -> None:
    lines = to_mermaid(flow()).splitlines()
    assert '    s0 -->|"button.pagar"| s3' in lines
    assert '    s0 -.->|"timeout 2h"| s2' in lines
    assert '    s1 -.->|"timeout"| s6' in lines
    assert "    s2 --> s5" in lines  # plain `next` edges carry no label
    assert (
        '    s3 -->|"context.valor #gt; 1000 and context.tipo == #quot;cartão#quot; '
        'or context.x #124; length"| s5'
    ) in lines
    assert '    s3 -->|"else"| s4' in lines


def test_dot_uses_shapes_quotes_labels_and_dashed_timeouts() -> None:
    text = to_dot(flow())
    lines = text.splitlines()
    assert lines[0] == 'digraph "cobranca" {'
    assert lines[-1] == "}"
    assert '    "(start)" -> "lembrete";' in lines
    assert (
        '    "lembrete" [shape=parallelogram, label="lembrete\\nsend whatsapp via sandbox"];'
        in lines
    )
    assert '    "espera" [shape=hexagon, label="espera\\nwait for reply up to 1d"];' in lines
    assert '    "decide" [shape=diamond, label="decide\\nbranch"];' in lines
    assert '    "atendimento" [shape=box3d, label="atendimento\\nhandoff to João"];' in lines
    assert '    "end" [shape=doublecircle, label="end\\nend: completed"];' in lines
    assert '    "lembrete" -> "sms" [label="timeout 2h", style=dashed];' in lines
    assert '    "sms" -> "atendimento";' in lines
    assert (
        '    "decide" -> "atendimento" [label="context.valor > 1000 and context.tipo == '
        '\\"cartão\\" or context.x | length"];'
    ) in lines


def test_every_step_and_every_move_appears_once() -> None:
    f = flow()
    mermaid = to_mermaid(f)
    dot = to_dot(f)
    moves = sum(len(f.successors(sid)) for sid in f.steps)
    assert mermaid.count("-->") + mermaid.count("-.->") == moves + 1  # + the start arrow
    assert dot.count(" -> ") == moves + 1
    for sid in f.steps:
        assert f'"{sid}" [shape=' in dot


def test_next_of_a_send_that_waits_for_answers_is_labelled_with_when_it_is_taken() -> None:
    # With `on:` (or a timeout) a sent message waits for them: `next` is taken only
    # when the send fails or is skipped. Unlabelled, it read as the normal path.
    text = """\
flow: oferta
defaults: {provider: sandbox}
start: a
steps:
  a:
    send: {text: oi}
    on: {reply: fim, failed: fim}
    next: b
  b:
    send: {text: tchau}
    timeout: {after: 1h, goto: fim}
    next: fim
  fim: {end: completed}
"""
    f = load_flow_text(text, "oferta.yaml").flow
    mermaid = to_mermaid(f).splitlines()
    assert '    s0 -->|"skipped"| s1' in mermaid
    assert '    s1 -->|"failed, skipped"| s2' in mermaid
    assert '    "a" -> "b" [label="skipped"];' in to_dot(f).splitlines()
    assert "    s2 --> s5" in to_mermaid(flow())  # a send that only moves on: no label
