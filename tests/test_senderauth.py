"""Authentication-Results: only our server's topmost header counts."""

from __future__ import annotations

import pytest

from consultant.senderauth import authentication_verdict

OURS = "mx.caseconsultant.example"


@pytest.mark.parametrize(
    "headers, verdict",
    [
        ([], "none"),
        ([("authentication-results", f"{OURS}; dmarc=pass header.from=x.example")], "pass"),
        ([("authentication-results", f"{OURS}; dmarc=fail header.from=x.example")], "fail"),
        ([("authentication-results", f"{OURS}; spf=fail; dkim=none")], "fail"),
        ([("authentication-results", f"{OURS}; spf=fail; dkim=pass header.d=x.example")], "pass"),
        # X02: a forged pass below our genuine fail is ignored
        ([("authentication-results", f"{OURS}; dmarc=fail"), ("authentication-results", f"{OURS}; dmarc=pass")], "fail"),
        # X03: another server's claim is ignored
        ([("authentication-results", "evil.example; dmarc=pass")], "none"),
        ([("authentication-results", f"{OURS.upper()} 1; dmarc=fail")], "fail"),
        ([("authentication-results", ";;;")], "none"),
    ],
)
def test_verdicts(headers, verdict) -> None:  # type: ignore[no-untyped-def]
    assert authentication_verdict(tuple(headers), authserv_id=OURS) == verdict


def test_nothing_is_trusted_without_a_configured_server() -> None:
    headers = (("authentication-results", f"{OURS}; dmarc=fail"),)
    assert authentication_verdict(headers, authserv_id="") == "none"
