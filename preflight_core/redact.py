"""Secrets out of text that gets shown: URLs (mirrors can carry credentials) and messages holding URLs."""

from __future__ import annotations

import re

_SECRET_PARAM = re.compile(
    r"(?i)([?&][^=&#\s]*(?:token|key|sig|auth|password|secret|credential)[^=&#\s]*=)[^&#\s]*")
# user:password@ up to the last @ of the authority (an unencoded @ in a password stays hidden too)
_USERINFO = re.compile(r"(//)[^/?#\s]+@")


def redact(text: str) -> str:
    """``text`` (a URL or a message holding URLs) without user:password@ and token-like query values."""
    return _USERINFO.sub(r"\1", _SECRET_PARAM.sub(r"\1***", text))
