"""A mitmdump script for tests: makes ssemedic's inspection fail on every chunk,
to show that the stream still flows unchanged and the error is logged once."""

from ssemedic.core.session import StreamSession


def _broken_feed(self, data, at=None):  # type: ignore[no-untyped-def]
    raise RuntimeError("injected inspection failure")


StreamSession.feed = _broken_feed  # type: ignore[method-assign]
