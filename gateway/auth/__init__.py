"""Authentication and authorisation: SMART Backend Services for hospital systems, scopes."""
