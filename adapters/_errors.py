"""The exceptions of the adapters package: one hierarchy, one module.

::

    AdapterError                 the input cannot be turned into a Bundle at all
    ├── UnsupportedInput         well-formed, but not something we map (message type, HL7 version,
    │                            document kind, resource type, unknown adapter name)
    ├── MalformedInput           not valid in its own format (broken MSH, unparsable XML or JSON,
    │                            not a PDF, a sidecar that is not a JSON object)
    ├── UnsafeInput              refused for safety (DTD or entities, size, depth, archive bombs)
    ├── ProfileError             a CSV mapping profile is unknown or invalid (configuration)
    └── InternalAdapterError     a defect in an adapter: an unexpected exception, or a produced
                                 resource that failed FHIR R4B validation

Every error carries a one-line message that names the place (``location``), so the gateway can turn
it into an HL7 NACK, a CLI error or an OperationOutcome without re-parsing the input. Problems that
still let a Bundle be built are not exceptions but ``ConversionIssue``s on the ``Conversion``.
"""

from __future__ import annotations


class AdapterError(Exception):
    """Base of every error raised by ``adapters.convert`` and the adapter helpers.

    ``hl7_error_code`` is the HL7 table 0357 code an ACK should carry for this error.
    """

    hl7_error_code: str = "207"  # application internal error

    def __init__(
        self, message: str, *, location: str | None = None, hl7_error_code: str | None = None
    ) -> None:
        # Keep the message on one line: it ends up in an ACK segment and in log lines.
        self.message = " ".join(message.split())
        self.location = location
        if hl7_error_code is not None:
            self.hl7_error_code = hl7_error_code
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class UnsupportedInput(AdapterError):
    """The input is well-formed but of a kind this package does not map."""

    hl7_error_code = "200"  # unsupported message type


class MalformedInput(AdapterError):
    """The input does not follow the rules of its own format."""

    hl7_error_code = "102"  # data type error


class UnsafeInput(AdapterError):
    """The input was refused before or while parsing because processing it is unsafe."""


class ProfileError(AdapterError):
    """A CSV mapping profile is unknown or does not follow the profile language."""


class InternalAdapterError(AdapterError):
    """An adapter produced something it should not have: a bug to report, not the sender's."""
