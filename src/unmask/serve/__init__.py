"""`unmask serve`: the explorer in the browser (CWOX's application, for every method and metric).

:func:`create_app` builds the FastAPI application (needs the ``serve`` extra: fastapi, uvicorn,
python-multipart); ``unmask serve`` runs it with uvicorn. See ``docs/serve.md`` and, for what
it guards against, ``SECURITY.md``. The rooms: :mod:`~unmask.serve.schemas` (request bodies),
:mod:`~unmask.serve.state` (what the routes share), :mod:`~unmask.serve.routes` (the API),
:mod:`~unmask.serve.planners` (jobs), :mod:`~unmask.serve.jobs` (the queue),
:mod:`~unmask.serve.guards` (hosts, sizes, headers), :mod:`~unmask.serve.uploads`,
:mod:`~unmask.serve.results`, :mod:`~unmask.serve.validate`.
"""

from .app import create_app
from .guards import is_loopback

__all__ = ["create_app", "is_loopback"]
