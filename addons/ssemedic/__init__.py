"""ssemedic: inspect, diagnose and repair streamed LLM responses.

The core (parsers, providers, session) is sans-IO and never imports mitmproxy;
only the addon and file-reading layers do.
"""

from .core.events import DEFAULT_MAX_EVENT_SIZE, IssueKind, ParseIssue, ServerSentEvent
from .core.message import Message
from .core.ndjson import NDJSONParser
from .core.session import EventRecord, StreamSession, Timing
from .core.sse import SSEParser

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_EVENT_SIZE",
    "EventRecord",
    "IssueKind",
    "Message",
    "NDJSONParser",
    "ParseIssue",
    "SSEParser",
    "ServerSentEvent",
    "StreamSession",
    "Timing",
    "__version__",
]
