"""The boundary every conversion passes: validation, and the last-resort exception guard."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ._errors import AdapterError, InternalAdapterError
from ._model import Conversion
from ._validation import validate_bundle

_log = logging.getLogger("adapters")


def run_adapter(
    name: str, call: Callable[[], Conversion], *, validate: bool, size: int
) -> Conversion:
    """Run one conversion; validate its Bundle when asked; raise only ``AdapterError``s.

    With ``validate`` every produced resource is checked against the FHIR R4B models and the
    required bindings the adapters use; a failure is an ``InternalAdapterError`` (a mapping
    defect), never a silently invalid Bundle.
    """
    try:
        conversion = call()
        if validate:
            validate_bundle(conversion.bundle)
            conversion.validated = True
    except AdapterError:
        raise
    except Exception as exc:
        # Last resort, for defects only: every adapter checks its input instead of relying on
        # this. The traceback goes to the log; the caller gets one error of the hierarchy.
        _log.exception("adapter %s failed on %d bytes of input", name, size)
        raise InternalAdapterError(
            f"{name} adapter failed unexpectedly ({type(exc).__name__}: {exc})"
        ) from exc
    return conversion
