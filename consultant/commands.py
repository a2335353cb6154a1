"""The mail commands: a message whose subject or first line is "register", a
six-digit confirmation code, "balance" (or "quota") or "help" is answered as
that command, never matched and never charged (`accounts.py` does the
registering). Pure: it runs in the match helper process too (`classify.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PREFIX = re.compile(r"^\s*((re|aw|sv|fw|fwd)\s*:\s*)+", re.IGNORECASE)
COMMANDS = {"register": "register", "balance": "balance", "quota": "balance", "help": "help"}


@dataclass(frozen=True)
class Command:
    kind: str  # register, confirm, balance, help
    code: str = ""


def detect_command(subject: str, body: str) -> Command | None:
    """A command is the subject or the first body line, alone (a little punctuation allowed).

    A six-digit code as the first line wins over the subject, because the reply
    to our register email keeps the subject "Re: register".
    """
    first_line = next((line for line in body.splitlines() if line.strip()), "")
    confirm = re.fullmatch(r"(?:register|confirm|code)?\s*:?\s*(\d{6})", _word(first_line))
    if confirm:
        return Command("confirm", confirm.group(1))
    for candidate in (_PREFIX.sub("", subject), first_line):
        if _word(candidate) in COMMANDS:
            return Command(COMMANDS[_word(candidate)])
    return None


def _word(text: str) -> str:
    return text.strip().strip(".!?:").strip().lower()
