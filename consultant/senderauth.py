"""Sender authentication: trust `Authentication-Results` only from our own receiving server.

Anyone can write an Authentication-Results header, so only those stamped
with the configured authserv-id count (RFC 8601), and of those only the
topmost: our server adds its header above everything the sender wrote, so a
forged "pass" further down is ignored (checklist X02, X03).

The verdict is `fail` when DMARC fails, or when SPF fails and no DKIM
signature passes; `pass` when DMARC, DKIM or SPF passes; `none` when our
server said nothing (or no authserv-id is configured). A `fail` is never
answered as the account it claims to be and never charged (X01).
"""

from __future__ import annotations

import re

_RESULT = re.compile(r"\b(dmarc|spf|dkim)\s*=\s*([a-z]+)", re.IGNORECASE)


def authentication_verdict(headers: tuple[tuple[str, str], ...], *, authserv_id: str) -> str:
    """`pass`, `fail` or `none` for a message's (lower-case name, value) headers, top first."""
    if not authserv_id:
        return "none"
    wanted = authserv_id.strip().lower()
    for name, value in headers:
        if name != "authentication-results":
            continue
        words = value.split(";", 1)[0].split()
        serv_id = words[0].lower() if words else ""
        if serv_id != wanted:
            continue
        results: dict[str, set[str]] = {}
        for method, outcome in _RESULT.findall(value):
            results.setdefault(method.lower(), set()).add(outcome.lower())
        dmarc, spf, dkim = (results.get(m, set()) for m in ("dmarc", "spf", "dkim"))
        if "fail" in dmarc or ("fail" in spf and "pass" not in dkim):
            return "fail"
        if "pass" in dmarc | dkim | spf:
            return "pass"
        return "none"
    return "none"
