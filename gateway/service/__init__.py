"""The service layer: the one way to read or write resources (the choke point)."""

from gateway.service.resources import ResourceResult, ResourceService, RetrievedContent

__all__ = ["ResourceResult", "ResourceService", "RetrievedContent"]
