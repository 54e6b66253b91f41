"""`unmask serve`: the explorer in the browser (CWOX's application, for every method and metric).

:func:`create_app` builds the FastAPI application (needs the ``serve`` extra: fastapi, uvicorn,
python-multipart); ``unmask serve`` runs it with uvicorn. See ``docs/serve.md``.
"""

from .app import create_app, is_loopback

__all__ = ["create_app", "is_loopback"]
