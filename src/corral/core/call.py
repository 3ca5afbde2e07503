"""The engine's inputs and outputs, defined in ``corral.conversation.call`` (the bottom layer,
so providers and routing can use them without importing the engine) and re-exported here for
code that reads them as the engine's."""

from corral.conversation.call import (
    Attempt,
    Call,
    Endpoint,
    ModelInfo,
    Outcome,
    Probe,
    Reply,
    Route,
    Served,
    Surface,
    Target,
)

__all__ = [
    "Attempt",
    "Call",
    "Endpoint",
    "ModelInfo",
    "Outcome",
    "Probe",
    "Reply",
    "Route",
    "Served",
    "Surface",
    "Target",
]
