"""The adapter registry and ``convert``, the one entry point the gateway calls."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from ._errors import MalformedInput, UnsupportedInput
from ._guard import run_adapter
from ._model import Conversion, SourceInfo
from .cda import convert_cda
from .csv import convert_csv
from .fhir_r4 import convert_fhir
from .hl7v2 import convert_hl7v2
from .pdf import convert_pdf

Adapter = Callable[[bytes, SourceInfo], Conversion]

ADAPTERS: Mapping[str, Adapter] = MappingProxyType(
    {
        "hl7v2": convert_hl7v2,
        "cda": convert_cda,
        "csv": convert_csv,
        "pdf": convert_pdf,
        "fhir": convert_fhir,
    }
)


def adapter_names() -> tuple[str, ...]:
    """The registered adapter names, in registry order."""
    return tuple(ADAPTERS)


def convert(adapter: str, data: bytes, source: SourceInfo, *, validate: bool = True) -> Conversion:
    """Convert ``data`` with the named adapter into a transaction Bundle plus issues.

    ``validate`` (default True) checks every produced resource against the FHIR R4B models;
    pass False on hot paths where the receiver validates anyway (the gateway validates every
    resource it stores). Raises only ``AdapterError`` subclasses, whatever the bytes are.
    The functions in ``ADAPTERS`` are the bare mappers, without validation or this guard.
    """
    function = ADAPTERS.get(adapter)
    if function is None:
        raise UnsupportedInput(f"unknown adapter {adapter!r}; known: {', '.join(ADAPTERS)}")
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise MalformedInput(f"input must be bytes, got {type(data).__name__}")
    payload = data
    return run_adapter(
        adapter, lambda: function(payload, source), validate=validate, size=len(data)
    )
