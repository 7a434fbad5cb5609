"""HTTP interface of the gateway (FastAPI)."""

from gateway.api.app import create_app

__all__ = ["create_app"]
