"""The errors `shared/` raises: one root, `GatewayError`, that every layer's errors derive from.

Each layer that raises errors of its own has an `errors.py` with one root class
(`services/api/errors.py`, `services/executor/errors.py`, `services/projector/errors.py`; the
notifier raises only these); docs/errors.md lists every class, who raises it and its HTTP
answer.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error the gateway defines."""


class MalformedEvent(GatewayError, ValueError):
    """A record that is not a readable bucket event: bad JSON, bad envelope, bad data."""


class UnknownEventType(GatewayError):
    """A well-formed CloudEvent of a type this code does not know; consumers skip it."""

    def __init__(self, event_type: str) -> None:
        super().__init__(f"unknown event type {event_type!r}")
        self.event_type = event_type


class TargetRefused(GatewayError, ValueError):
    """The URL is not one the gateway will call; the message says why."""


class TargetUnresolvable(TargetRefused):
    """The URL's host does not resolve (now: DNS may answer differently later)."""


class RestartNeeded(GatewayError):
    """A service lost what only a fresh start regains (an executor's signer fence):
    `shared.lifecycle.run_service` starts it again in the same process, as for an outage."""


class InsecureSecretFile(GatewayError, PermissionError):
    """The file holding a secret is readable (or writable) by its group or by others."""
