"""Credentials out of URLs before they are shown: in errors, logs and ``check-config``.

A URL may carry a secret in its user info (``https://user:password@host``, or a bare token as
the user) or in a query parameter (``?token=...``, InfluxDB 1.x ``?u=...&p=...``). Everything
that prints a configured URL passes it through ``redact_url``; free text that may quote one
(an HTTP client's exception) through ``redact_urls``.

Example:
    >>> redact_url("https://admin:hunter2@influx:8086/?org=o&token=abc")
    'https://***@influx:8086/?org=o&token=***'
"""

from __future__ import annotations

import re

MASK = "***"
# user info: after the scheme (or at the start of a scheme-less URL) up to the last @ before
# the path; a password holding a raw '/', '?' or '#' is not a valid URL and is cut there
_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*:)?//|^)([^/?#\s]*)@")
_PARAM = re.compile(r"([?&;#])([^=&;#\s]+)=([^&;#\s]*)")
_SECRET_NAME = re.compile(r"^(p|u|pw|pwd|pass|sig|code|auth|jwt)$|token|secret|passw|key|"
                          r"signature|credential|auth|session", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """``url`` with its user info and secret-looking query values replaced by ``***``.

    Example:
        >>> redact_url("http://127.0.0.1:8086/write?db=x&u=me&p=pw")
        'http://127.0.0.1:8086/write?db=x&u=***&p=***'
        >>> redact_url("tok3n@influx:8086")
        '***@influx:8086'
    """
    url = _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@" if m.group(2) else m.group(0), url)
    return _mask_params(url)


def redact_urls(text: str) -> str:
    """``text`` with every ``scheme://...`` URL in it passed through ``redact_url``, and secret
    query parameters masked wherever they stand (a client error may quote only the path).

    Example:
        >>> redact_urls("http://u:pw@db:8086/ refused, url: /api/v2/write?org=o&token=t")
        'http://***@db:8086/ refused, url: /api/v2/write?org=o&token=***'
    """
    return _mask_params(_URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text))


def _mask_params(text: str) -> str:
    return _PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}={MASK}"
                      if _SECRET_NAME.search(m.group(2)) else m.group(0), text)
