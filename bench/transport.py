"""The transport baseline: what the mail servers allow, with none of our work in between.

    python -m bench.transport          (CONSULTANT_IMAP_* / CONSULTANT_SMTP_* from the environment)

The same servers, batch size and connection reuse as the pipeline, and the
same IMAP commands per batch (SELECT, UID SEARCH UNDELETED, UID FETCH
RFC822.SIZE, UID FETCH BODY.PEEK[], one UID MOVE), one SMTP connection per
batch as `deliver_pending` opens, and a fixed reply of a real reply's size
for every message: no parsing, matching, rendering or database. It answers
machine mail too, so it sends a little more than the pipeline does, which
makes the ratio against it conservative. Same stdin/stdout protocol as
bench/worker.py.
"""

from __future__ import annotations

import json
import os
import resource
import smtplib
import sys
import threading
import time
from email.message import EmailMessage
from email.policy import SMTP

from imapclient import IMAPClient

from bench.procs import peak_rss_mb

REPLY_BYTES = 6000  # about what a rendered reply weighs (text + HTML)


def fixed_reply(sender: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "asker@clinic.example"
    msg["Subject"] = "Re: Coding question"
    msg["Message-ID"] = "<baseline@localhost>"
    text = "E11.9 Type 2 diabetes mellitus without complications.\n" * (REPLY_BYTES // 110)
    msg.set_content(text)
    msg.add_alternative(f"<html><body><p>{text}</p></body></html>", subtype="html")
    return msg.as_bytes(policy=SMTP)  # CRLF line ends, as SMTP wants them


def wait_for(word: str) -> None:
    for line in sys.stdin:
        if line.strip() == word:
            return


def main() -> int:
    env = os.environ
    batch = int(env.get("CONSULTANT_IMAP_BATCH", "100"))
    sender = env.get("CONSULTANT_ADDRESS", "consultant@localhost")
    smtp_host, smtp_port = env["CONSULTANT_SMTP_HOST"], int(env["CONSULTANT_SMTP_PORT"])
    imap = IMAPClient(env["CONSULTANT_IMAP_HOST"], port=int(env["CONSULTANT_IMAP_PORT"]), ssl=False, timeout=30)
    imap.login(env["CONSULTANT_IMAP_USER"], env["CONSULTANT_IMAP_PASSWORD"])
    if not imap.folder_exists("Processed"):
        imap.create_folder("Processed")
    imap.select_folder("INBOX")
    reply = fixed_reply(sender)
    print("ready", flush=True)
    wait_for("go")
    stop = threading.Event()
    threading.Thread(target=lambda: (wait_for("stop"), stop.set()), daemon=True).start()
    moved = sent = passes = 0
    started = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    while not stop.is_set():
        passes += 1
        imap.select_folder("INBOX")  # as ImapInbox.fetch_batch does on every poll
        uids = sorted(imap.search(["UNDELETED"]))[:batch]
        if not uids:
            stop.wait(0.02)
            continue
        imap.fetch(uids, ["RFC822.SIZE"])
        bodies = imap.fetch(uids, ["BODY.PEEK[]"])
        smtp = smtplib.SMTP(smtp_host, smtp_port, timeout=30)
        for uid in uids:
            if uid in bodies:
                smtp.sendmail(sender, ["asker@clinic.example"], reply)
                sent += 1
        smtp.quit()
        imap.move(uids, "Processed")
        moved += len(uids)
    imap.logout()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "passes": passes, "fetched": moved, "sent": sent, "seconds": round(time.monotonic() - started, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 3),
        "peak_rss_mb": peak_rss_mb(),
    }), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
