"""The exception tree. Two families, translated at the seams, caught in one place.

    ConsultantError
    ├── SenderError          the message or the sender is at fault; quarantine or a polite reply
    │   ├── UnparseableMessage   not an email we can read (reason: unparseable)
    │   └── NoSender             no usable From address (reason: no_sender)
    └── ServiceError         we, or a server we depend on, failed; retry later
        ├── ConfigError          a setting is wrong; names the setting
        ├── MailboxError         IMAP failed (connect, login, fetch, move)
        ├── SendError            SMTP failed
        │   └── PermanentSendError   5xx: do not retry
        └── CodeDataError        code data missing or malformed (file, line, column)

`pipeline.process_message` is the one error boundary: a SenderError ends the
case as quarantined/rejected with its `reason`; a ServiceError leaves the
message in the mailbox to be tried on the next poll.
"""

from __future__ import annotations

from datetime import timedelta


class ConsultantError(Exception):
    """Base of every error this package raises on purpose."""


class SenderError(ConsultantError):
    reason = "rejected"


class UnparseableMessage(SenderError):
    reason = "unparseable"


class NoSender(SenderError):
    reason = "no_sender"


class ServiceError(ConsultantError):
    pass


class ConfigError(ServiceError):
    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class MailboxError(ServiceError):
    def __init__(self, message: str, *, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # how long the server asked us to wait, when it said


class SendError(ServiceError):
    pass


class PermanentSendError(SendError):
    pass


class CodeDataError(ServiceError):
    pass
