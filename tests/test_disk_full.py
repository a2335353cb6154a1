"""D06: the disk fills up under the database. The poll fails and rolls back, nothing is
acknowledged on the mailbox, the worker carries on; once there is room, everything is answered.

A real full filesystem: a 4 MB tmpfs mounted for the test (mounting needs root, as CI has)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from consultant.db import make_engine, migrate
from consultant.inbox import MemoryInbox
from consultant.scheduling import poll
from tests.test_pipeline import make_services, question

pytestmark = pytest.mark.integration


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        if os.environ.get("CONSULTANT_REQUIRE_ROOT_TESTS", "").lower() in {"1", "true", "yes"}:
            pytest.fail("mounting a small filesystem needs root")
        pytest.skip("mounting a small filesystem needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of `disk` with one file; returns it (delete it to make room)."""
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_fails_the_poll_and_loses_nothing(small_disk: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{small_disk / 'consultant.sqlite3'}")
    migrate(engine)
    services = make_services(engine, inbox=MemoryInbox())
    for n in range(3):
        services.inbox.deliver(question(f"What is CPT 62310? ({n})", sender=f"d{n}@clinic.example",
                                        message_id=f"<full-{n}@clinic.example>"))
    filler = fill(small_disk)

    assert poll(services) is None  # logged as a failed poll, never raised
    assert services.inbox.processed == {} and len(services.inbox.messages) == 3  # nothing acknowledged
    assert services.transport.sent == []
    assert "database error" in caplog.text

    filler.unlink()  # room again
    engine.dispose()
    summary = poll(services)
    assert summary is not None and summary.acknowledged == 3
    assert sorted(m.recipients[0] for m in services.transport.sent) == [f"d{n}@clinic.example" for n in range(3)]
    engine.dispose()
