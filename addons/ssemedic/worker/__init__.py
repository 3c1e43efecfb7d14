"""Stream inspection in a process of its own (``ssemedic_worker``).

mitmproxy's event loop then only records, forwards and hands each chunk to
the worker (mitm/offload.py, the proxy's side); the worker
(``inspector.py``, run by ``__main__.py``) parses, interprets, diagnoses and
reports, with the same Pipeline and Reporter as in the proxy. ``core/wire.py``
is the framing between the two.
"""
