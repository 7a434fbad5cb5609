"""Zorgbrug gateway: the FHIR R4 service that wires storage, exchange, consent and audit."""

from gateway.settings import Settings

__all__ = ["Settings"]
__version__ = "0.1.0"
