"""FHIR R4 semantics: validation, formats, search parameters, indexing, bundles."""
