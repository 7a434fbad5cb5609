"""Web UI of the gateway for clinicians."""
