"""Flow kinds and their preset machines: what a spec need not write.

A flow *kind* is what the engine can drive: it names the triggers the engine
fires for that kind of flow (and which of them a machine must handle). A
*preset* is the standard machine of a kind. A spec with an ``authorization``
section and no ``machine`` gets the authorization-code preset; ``machine:
{preset: authorization_code, ttl: 300}`` picks it explicitly with another ttl;
a grant-only spec has no flows and no machine. A spec with a ``device`` section runs
its device flows (RFC 8628) on the ``device`` preset, whatever its ``machine`` says.
"""

from __future__ import annotations

from enum import StrEnum

import attrs

from flowengine._records import Outcome
from flowengine._spec import MachineSpec, TransitionSpec

__all__ = ["AUTHORIZATION_CODE", "DEVICE", "KINDS", "PRESETS", "FlowKind", "Trigger", "expand_preset"]

AUTHORIZATION_CODE = "authorization_code"
DEVICE = "device"


class Trigger(StrEnum):
    """Every trigger the engine fires; a kind names those it fires for its flows."""

    CALLBACK = "callback"
    EXCHANGE = "exchange"
    ANSWER = "answer"
    UNSENT = "unsent"
    INTERRUPT = "interrupt"
    EXPIRE = "expire"


@attrs.frozen
class FlowKind:
    """A kind of flow the engine drives: the triggers it fires, and those a machine must handle."""

    name: str
    #: trigger -> when the engine fires it (shown in docs and in ``spec show``).
    triggers: dict[str, str]
    required: frozenset[str]


KINDS: dict[str, FlowKind] = {
    AUTHORIZATION_CODE: FlowKind(
        AUTHORIZATION_CODE,
        triggers={
            Trigger.CALLBACK: "the redirect came back (a code, a denial or another error)",
            Trigger.EXCHANGE: "the code is about to be sent to the token endpoint",
            Trigger.ANSWER: "the token endpoint answered (a token or an error)",
            Trigger.UNSENT: "the token request never left this process: the code is unspent",
            Trigger.INTERRUPT: "an exchange was found begun by a worker that is gone",
            Trigger.EXPIRE: "a pending flow outlived its ttl",
        },
        required=frozenset(
            {Trigger.CALLBACK, Trigger.EXCHANGE, Trigger.ANSWER, Trigger.UNSENT, Trigger.INTERRUPT}
        ),
    ),
    DEVICE: FlowKind(
        DEVICE,
        triggers={
            Trigger.ANSWER: "a poll of the token endpoint ended it: a token, a denial or another error",
            Trigger.EXPIRE: "the device code expired (the provider said expired_token, or it ran out)",
        },
        required=frozenset({Trigger.ANSWER, Trigger.EXPIRE}),
    ),
}


def _t(
    trigger: str,
    source: str | tuple[str, ...],
    dest: str,
    when: tuple[str, ...] = (),
    do: tuple[str, ...] = (),
) -> TransitionSpec:
    return TransitionSpec(trigger, (source,) if isinstance(source, str) else source, dest, when, do)


PRESETS: dict[str, MachineSpec] = {
    AUTHORIZATION_CODE: MachineSpec(
        states=("redirected", "authorized", "exchanging", "exchanged", "denied", "failed"),
        initial="redirected",
        final={"exchanged": Outcome.GRANTED, "denied": Outcome.DENIED, "failed": Outcome.FAILED},
        transitions=(
            _t("callback", "redirected", "authorized", when=("code_present",), do=("record_code",)),
            _t(
                "callback",
                "redirected",
                "denied",
                when=("error_is_denial",),
                do=("record_error", "forget_secrets"),
            ),
            _t("callback", "redirected", "failed", do=("record_error", "forget_secrets")),
            _t("exchange", "authorized", "exchanging"),
            _t(
                "answer",
                "exchanging",
                "exchanged",
                when=("token_received",),
                do=("record_token", "save_token", "forget_secrets"),
            ),
            _t("answer", "exchanging", "failed", do=("record_error", "forget_secrets")),
            _t("unsent", "exchanging", "authorized"),
            _t("interrupt", "exchanging", "failed", do=("record_error", "forget_secrets")),
            _t("expire", ("redirected", "authorized"), "failed", do=("record_error", "forget_secrets")),
        ),
        kind=AUTHORIZATION_CODE,
        preset=AUTHORIZATION_CODE,
    ),
    # RFC 8628: the device code was issued and the flow polls while the person decides
    # elsewhere. A poll answered authorization_pending or slow_down moves nothing.
    DEVICE: MachineSpec(
        states=("requested", "granted", "denied", "expired", "failed"),
        initial="requested",
        final={
            "granted": Outcome.GRANTED,
            "denied": Outcome.DENIED,
            "expired": Outcome.EXPIRED,
            "failed": Outcome.FAILED,
        },
        transitions=(
            _t(
                "answer",
                "requested",
                "granted",
                when=("token_received",),
                do=("record_token", "save_token", "forget_secrets"),
            ),
            _t(
                "answer",
                "requested",
                "denied",
                when=("error_is_denial",),
                do=("record_error", "forget_secrets"),
            ),
            _t("answer", "requested", "failed", do=("record_error", "forget_secrets")),
            _t("expire", "requested", "expired", do=("record_error", "forget_secrets")),
        ),
        ttl=1800,
        kind=DEVICE,
        preset=DEVICE,
    ),
}


def expand_preset(machine: MachineSpec | None) -> MachineSpec:
    """The machine written out: a preset (or no machine at all) becomes the preset's machine.

    Only ``ttl`` is taken from a preset reference; ``_spec_check`` reports a preset
    reference that also writes states or transitions.
    """
    if machine is None:
        return PRESETS[AUTHORIZATION_CODE]
    if machine.preset is None or machine.preset not in PRESETS or machine.states:
        return machine
    return attrs.evolve(PRESETS[machine.preset], ttl=machine.ttl)
