"""The one flow file a simulation (``disparo simulate``) and a diagram (``disparo
graph``) read.

Both are about one flow. ``disparo serve`` refuses to start while any file of the
flows directory has a problem, since it would serve them all; a simulation must not:
a designer simulates one flow while another is half written, or while another names
a provider only the production config has. So the flow is found by its name among
the files that load (the others are named in a warning), checked in full at its own
path as ``serve`` would check it, and the simulation's engine reads a directory that
holds that file alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.errors import FlowError, NotFound
from engine.flow.loader import LoadedFlow, load_flow, read_flows
from engine.flows import warn_left_out
from engine.settings import Settings
from engine.wording import counted


def find_flow(settings: Settings, ref: str) -> LoadedFlow:
    """The flow ``ref`` names (a file, or a flow of the config's flows directory),
    without checks against providers. The problems of other files are warnings; a
    flow not found among the files that load is an error with every problem."""
    if Path(ref).is_file():
        return load_flow(Path(ref))
    directory = Path(settings.flows)
    flows, problems = read_flows(directory)
    if ref in flows:
        warn_left_out(problems)
        return flows[ref]
    if problems:
        raise FlowError(f"{counted(len(problems), 'problem')} in {directory}", problems)
    raise NotFound(f"no flow file or flow named {ref!r}; flows: {', '.join(sorted(flows))}")


def simulated_flow(settings: Settings, ref: str, scratch: Path) -> tuple[Settings, str]:
    """``settings`` with ``flows`` set to ``scratch``, where the file of flow ``ref``
    is copied once it passes every check ``serve`` applies (``FlowError`` naming its
    own path otherwise), and the flow's name."""
    from engine.check import capabilities_of, flow_checks, load_catalog

    found = find_flow(settings, ref)
    assert found.path is not None  # read from a file
    capabilities = capabilities_of(settings)
    checks = flow_checks(capabilities, load_catalog(settings), settings.opt_out_keywords)
    load_flow(found.path, providers=capabilities, extra_checks=checks)
    shutil.copyfile(found.path, scratch / found.path.name)
    return settings.model_copy(update={"flows": str(scratch)}), found.flow.flow
