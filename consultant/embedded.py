"""The embedded default: a development mailbox on loopback.

With no `CONSULTANT_IMAP_HOST`, the service starts its own mail servers:

* pymap (a pure-Python IMAP server, in-memory `dict` backend) in a child
  process, with one user: the consultant's address;
* aiosmtpd in a thread. Mail for the consultant's address is APPENDed into
  the pymap inbox, so anyone can email the consultant from a mail client
  pointed at this SMTP port; every other message (the consultant's replies)
  is written to `var/outgoing/` and announced on stderr, so a person sees
  the replies as they go out.

pymap advertises no MOVE; the inbox falls back to COPY + EXPUNGE. The dict
backend keeps mail in memory only: it is a development mailbox, not storage.
"""

from __future__ import annotations

import logging
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from consultant.errors import ConfigError
from consultant.inbox import ImapConfig, ImapInbox

log = logging.getLogger(__name__)


@dataclass
class EmbeddedMail:
    """Handles to the running embedded servers."""

    address: str
    imap_port: int
    smtp_port: int
    password: str = field(repr=False)
    process: subprocess.Popen[bytes] | None = None
    controller: Controller | None = None

    def imap_config(self) -> ImapConfig:
        return ImapConfig(
            host="127.0.0.1", port=self.imap_port, user=self.address, password=self.password, use_ssl=False,
            timeout=10.0,
        )

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None


class DeliveryHandler:
    """aiosmtpd handler: consultant mail into the IMAP inbox, the rest to var/outgoing."""

    def __init__(self, *, address: str, imap: ImapConfig, outgoing: Path) -> None:
        self.address = address.lower()
        self.imap = imap
        self.outgoing = outgoing

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        local = [r for r in envelope.rcpt_tos if r.lower() == self.address]
        others = [r for r in envelope.rcpt_tos if r.lower() != self.address]
        if local:
            inbox = ImapInbox(self.imap)
            try:
                inbox.append(raw)
            finally:
                inbox.close()
        if others:
            self._show_outgoing(raw, others)
        return "250 Message accepted for delivery"

    def _show_outgoing(self, raw: bytes, recipients: list[str]) -> None:
        self.outgoing.mkdir(parents=True, exist_ok=True)
        path = self.outgoing / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}.eml"
        path.write_bytes(raw)
        msg = message_from_bytes(raw, policy=policy.default)
        body = msg.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        print(
            f"\n=== reply to {', '.join(recipients)}: {msg['Subject']} (saved as {path})\n{text}",
            file=sys.stderr,
            flush=True,
        )


def _wait_for_port(port: int, *, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError("CONSULTANT_EMBEDDED_IMAP_PORT", f"the embedded IMAP server exited (is port {port} taken?)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise ConfigError("CONSULTANT_EMBEDDED_IMAP_PORT", f"the embedded IMAP server did not start on port {port}")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_embedded(*, address: str, imap_port: int, smtp_port: int, outgoing: Path) -> EmbeddedMail:
    """Start pymap and aiosmtpd on loopback; ConfigError names a busy port."""
    for setting, port in (("CONSULTANT_EMBEDDED_IMAP_PORT", imap_port), ("CONSULTANT_EMBEDDED_SMTP_PORT", smtp_port)):
        if not _port_free(port):
            raise ConfigError(setting, f"port {port} on 127.0.0.1 is already in use")
    mail = EmbeddedMail(address=address, imap_port=imap_port, smtp_port=smtp_port, password=secrets.token_urlsafe(12))
    mail.process = subprocess.Popen(
        [
            sys.executable, "-c", "from pymap.main import main; main()",
            "--no-tls", "--host", "127.0.0.1", "--port", str(imap_port),
            "dict", "--demo-user", address, "--demo-password", mail.password,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(imap_port, timeout=20, process=mail.process)
        handler = DeliveryHandler(address=address, imap=mail.imap_config(), outgoing=outgoing)
        mail.controller = Controller(handler, hostname="127.0.0.1", port=smtp_port)
        mail.controller.start()
    except BaseException:
        mail.stop()
        raise
    log.info("embedded mailbox: IMAP 127.0.0.1:%s, SMTP 127.0.0.1:%s, address %s", imap_port, smtp_port, address)
    return mail
