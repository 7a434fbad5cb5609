"""Intake of EHR exports: files (``zorgbrug import``) and HL7 v2 over MLLP (``zorgbrug mllp``).

Both convert with ``adapters`` and submit through the same service layer as the FHIR API, as
the local operator of the sending organisation: documents go through the MHD Document Recipient
(duplicates, encryption, addressing), other data as a FHIR transaction.
"""

from gateway.intake.submission import Intake, IntakeResult

__all__ = ["Intake", "IntakeResult"]
