"""The sans-IO core: bytes in, values out, no sockets, files, mitmproxy or rich.

Per flow, a response body passes these stages, each a value-passing piece:

- ``decoding``: undo the Content-Encoding, incrementally;
- ``framing``, ``sse``, ``ndjson``, ``events``: choose the framing and cut the
  body into events, UTF-8-safe over any chunking;
- ``providers/``: what each provider's events mean (``parts``, ``message``);
- ``session``: one stream's events, timing and assembled message, handed on
  as values (``handoff``);
- ``diagnose``, ``faults``: what is wrong and how to fix it;
- ``repair``, ``inject``: what the client gets instead;
- ``pipeline``: the stages chosen once per flow, and what goes out;
- ``recording``: the recording format (raw body, chunk offsets and times).
"""
