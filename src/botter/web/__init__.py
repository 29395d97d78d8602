"""The ASGI web service: webhook ingest, health, readiness and metrics."""

from botter.web.app import create_app

__all__ = ["create_app"]
