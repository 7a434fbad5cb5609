"""The gateway's web UI for clinicians, assistants and data-protection officers (/ui/)."""
