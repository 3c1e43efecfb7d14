"""ssemedic: inspect, diagnose and repair streamed LLM responses.

The core (parsers, providers, session) is sans-IO and never imports mitmproxy;
only the addon and file-reading layers do.
"""

from .framing import DEFAULT_MAX_EVENT_SIZE, IssueKind, ParseIssue, ServerSentEvent
from .message import Message
from .ndjson import NDJSONParser
from .session import EventRecord, StreamSession, Timing
from .sse import SSEParser

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
