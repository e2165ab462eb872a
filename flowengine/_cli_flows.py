"""Flows a command reads straight from a store, with the outcome their machine gives them.

An engine settles every flow it reads (``FlowCore.settled``); commands that list
or show flows without one (``flows list``, ``flows show``) settle them here, by
the spec the flow names, so a flow stored by 0.1.0 (no ``outcome``) reads as
its state says.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from flowengine._errors import FlowError
from flowengine._machine import settle
from flowengine._presets import DEVICE, PRESETS
from flowengine._records import Flow, Outcome
from flowengine._spec_load import load_spec

__all__ = ["settled_flow"]


@lru_cache(maxsize=64)
def _final_states(spec: str) -> Mapping[str, Outcome] | None:
    try:
        machine = load_spec(spec).machine
    except FlowError:
        return None  # a spec not found by its name (a file elsewhere): the record says what it says
    return machine.final if machine is not None else None


def settled_flow(flow: Flow) -> Flow:
    """``flow`` with the outcome its spec's machine gives its state (``StoreError`` if they disagree).

    A device flow runs on the ``device`` preset; a flow whose spec is not found by
    name keeps what was stored.
    """
    final = PRESETS[DEVICE].final if flow.device is not None else _final_states(flow.spec)
    return flow if final is None else settle(flow, final)
