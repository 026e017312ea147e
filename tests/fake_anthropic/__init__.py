"""Local fake of the Anthropic Messages API (scripted, recording). See ``server.py``."""

from .server import (
    Block,
    FakeAnthropic,
    RecordedRequest,
    Reply,
    ReplyLike,
    RequestKind,
    TextBlock,
    ToolUseBlock,
    reply,
    text,
    tool_use,
)

__all__ = [
    "Block",
    "FakeAnthropic",
    "RecordedRequest",
    "Reply",
    "ReplyLike",
    "RequestKind",
    "TextBlock",
    "ToolUseBlock",
    "reply",
    "text",
    "tool_use",
]
