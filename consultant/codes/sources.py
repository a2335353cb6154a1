"""Read the code data shipped in `codes_db/` into plain row dicts.

Every reader yields dicts shaped like a `code` table row (system, code, display,
kind, official, billable, parent, ..., notes, release) without `plain`, which
the loader adds. Nothing here touches a database, and nothing runs at import.

The directory is `codes_db/` next to the `consultant` package, or the one
named by the environment variable CONSULTANT_CODES_DB.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from consultant.codes.notes import resolve_cm_notes
from consultant.errors import CodeDataError

CM, PCS, CPT, HCPCS, MOD = "ICD-10-CM", "ICD-10-PCS", "CPT", "HCPCS", "MOD"
SYSTEMS = (CM, PCS, CPT, HCPCS, MOD)

CM_FILE = "icd10cm-fy2026.jsonl.gz"
PCS_FILE = "icd10pcs.tsv.gz"
CPT_SAMPLE_FILE = "cpt_sample.tsv"
HCPCS_SAMPLE_FILE = "hcpcs_sample.tsv"
MOD_FILE = "modifiers.tsv"

CPT_SAMPLE_RELEASE = "CPT team sample (not AMA text)"
HCPCS_SAMPLE_RELEASE = "HCPCS Level II team sample"
MOD_RELEASE = "Modifiers (team wording)"


def data_dir() -> Path:
    """Where the shipped code data lives."""
    env = os.environ.get("CONSULTANT_CODES_DB")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2] / "codes_db"
    if (checkout / CM_FILE).exists():
        return checkout
    # Installed from a wheel: pyproject ships codes_db/ as package consultant.codes_db.
    return Path(__file__).resolve().parents[1] / "codes_db"


@dataclass
class Dataset:
    """One release of one system, ready to insert."""

    system: str
    release: str
    source: str
    sample: bool
    rows: list[dict] = field(default_factory=list)

    @property
    def billable_count(self) -> int:
        return sum(1 for r in self.rows if r["billable"])


def _row(system: str, code: str, display: str, official: str, release: str, **extra) -> dict:
    row = {
        "system": system,
        "code": code,
        "display": display,
        "kind": "code",
        "short": "",
        "official": official,
        "billable": True,
        "parent": None,
        "chapter": None,
        "block": None,
        "status": "valid",
        "change": None,
        "effective": None,
        "deleted_on": None,
        "replaced_by": [],
        "notes": {},
        "release": release,
    }
    row.update(extra)
    return row


def read_cm(directory: Path | None = None) -> Dataset:
    """ICD-10-CM: every node of the tabular plus the FY2025 -> FY2026 history."""
    path = (directory or data_dir()) / CM_FILE
    if not path.exists():
        raise CodeDataError(f"{path}: missing; run codes_db/build.py")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        header = json.loads(fh.readline())["header"]
        nodes = [json.loads(line) for line in fh if line.strip()]
    release = header["release"]
    resolved = resolve_cm_notes(nodes)
    ds = Dataset(CM, release, header["source"], False)
    for node, notes in zip(nodes, resolved):
        status = node.get("status", "valid")
        ds.rows.append(
            _row(
                CM,
                node["code"],
                node["display"],
                node["desc"],
                release,
                kind=node["kind"],
                billable=node["billable"],
                parent=node["parent"],
                chapter=node["chapter"],
                block=node["block"],
                status=status,
                change=node.get("change"),
                deleted_on=node.get("deleted_on"),
                replaced_by=node.get("replaced_by", []),
                notes=notes,
            )
        )
    return ds


def read_pcs(directory: Path | None = None) -> list[Dataset]:
    """ICD-10-PCS, one dataset per release named in the file (FY2024 + FY2025 section 0)."""
    path = (directory or data_dir()) / PCS_FILE
    if not path.exists():
        raise CodeDataError(f"{path}: missing; run codes_db/build.py")
    by_release: dict[str, Dataset] = {}
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        for rec in csv.DictReader(fh, delimiter="\t"):
            release = rec["release"]
            ds = by_release.get(release)
            if ds is None:
                ds = by_release[release] = Dataset(PCS, release, "CMS ICD-10-PCS order file", False)
            code = rec["code"]
            ds.rows.append(
                _row(
                    PCS,
                    code,
                    code,
                    rec["description"],
                    release,
                    billable=rec["billable"] == "1",
                    parent=code[:3],
                    chapter=code[:1],
                    block=code[:2],
                    status=rec["status"],
                    change=rec["change"] or None,
                    deleted_on=rec["deleted_on"] or None,
                )
            )
    return list(by_release.values())


def read_sample_tsv(path: Path) -> list[dict]:
    """The team-written TSVs: '#' comment lines, then a header row."""
    with open(path, encoding="utf-8", newline="") as fh:
        lines = [ln for ln in fh if ln.strip() and not ln.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def read_samples(directory: Path | None = None) -> list[Dataset]:
    """The CPT and HCPCS samples and the modifiers table."""
    base = directory or data_dir()
    out = []
    for system, name, release, source in (
        (CPT, CPT_SAMPLE_FILE, CPT_SAMPLE_RELEASE, "CaseConsultant team sample, own wording"),
        (HCPCS, HCPCS_SAMPLE_FILE, HCPCS_SAMPLE_RELEASE, "CaseConsultant team sample, own wording"),
    ):
        ds = Dataset(system, release, source, True)
        for rec in read_sample_tsv(base / name):
            deleted = rec["status"] == "deleted"
            ds.rows.append(
                _row(
                    system,
                    rec["code"],
                    rec["code"],
                    rec["description"],
                    release,
                    billable=not deleted,
                    status=rec["status"],
                    effective=rec["effective"] or None,
                    deleted_on=rec["deleted_on"] or None,
                    replaced_by=rec["replaced_by"].split(),
                    notes={"sample": True},
                )
            )
        out.append(ds)
    mods = Dataset(MOD, MOD_RELEASE, "CaseConsultant team, own wording", True)
    for rec in read_sample_tsv(base / MOD_FILE):
        mods.rows.append(
            _row(MOD, rec["code"], rec["code"], rec["description"], MOD_RELEASE, kind="modifier", billable=False, notes={"sample": True})
        )
    out.append(mods)
    return out


def read_all(directory: Path | None = None) -> Iterator[Dataset]:
    """Every shipped dataset, ICD-10-CM first."""
    yield read_cm(directory)
    yield from read_pcs(directory)
    yield from read_samples(directory)


def shipped_releases(directory: Path | None = None) -> list[tuple[str, str, bool]]:
    """(system, release, sample) of every shipped dataset, read cheaply."""
    base = directory or data_dir()
    out: list[tuple[str, str, bool]] = []
    cm_path = base / CM_FILE
    if cm_path.exists():
        with gzip.open(cm_path, "rt", encoding="utf-8") as fh:
            out.append((CM, json.loads(fh.readline())["header"]["release"], False))
    pcs_path = base / PCS_FILE
    if pcs_path.exists():
        seen: list[str] = []
        with gzip.open(pcs_path, "rt", encoding="utf-8") as fh:
            next(fh)
            for line in fh:
                release = line.split("\t")[3]
                if release not in seen:
                    seen.append(release)
        out.extend((PCS, r, False) for r in seen)
    out += [(CPT, CPT_SAMPLE_RELEASE, True), (HCPCS, HCPCS_SAMPLE_RELEASE, True), (MOD, MOD_RELEASE, True)]
    return out
