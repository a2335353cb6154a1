"""`consultant suggest`: the matcher on the command line.

    consultant suggest --json "TEXT"     one JSON object on stdout
    consultant suggest --batch           JSON lines {"id", "text"} in, one answer per line out

`consultant.cli` wires these in; `python -m consultant.match.commands` runs
them alone (the database comes from CONSULTANT_DATABASE_URL, by default the
SQLite file var/consultant.sqlite3).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict
from typing import IO, Any

from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Engine

from consultant.match.base import MatchResult

log = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite:///var/consultant.sqlite3"


def add_suggest_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("suggest", help="suggest codes for a question or a note")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--json", metavar="TEXT", help="print one JSON answer for TEXT")
    mode.add_argument("--batch", action="store_true", help='read JSON lines {"id", "text"} on stdin, answer each')
    parser.add_argument("--top", type=int, default=15, help="at most this many codes per answer (default 15)")
    return parser


def result_to_json(result: MatchResult, *, top: int = 15) -> dict[str, Any]:
    codes = []
    for s in result.codes[:top]:
        item = asdict(s)
        for key in ("replaced_by", "near", "evidence"):
            item[key] = list(item[key])
        codes.append(item)
    findings = [
        {"text": f.text, "negated": f.negated, "uncertain": f.uncertain, "history": f.history, "codes": list(f.codes)}
        for f in result.findings
    ]
    out: dict[str, Any] = {"codes": codes, "findings": findings}
    if not codes:
        out["status"] = "no_match"
    return out


def run_suggest_command(args: argparse.Namespace, engine: Engine, *, stdin: IO[str] | None = None,
                        stdout: IO[str] | None = None) -> int:
    from consultant.match import build_matcher

    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    _ensure_codes(engine)
    matcher = build_matcher(engine)
    top = getattr(args, "top", 15)
    if not args.batch:
        stdout.write(json.dumps(result_to_json(matcher.match(args.json), top=top)) + "\n")
        stdout.flush()
        return 0
    for line in stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            answer = result_to_json(matcher.match(str(request.get("text", ""))), top=top)
            answer = {"id": request.get("id"), **answer}
        except Exception as exc:  # one bad line must not end the batch
            log.exception("suggest --batch: could not answer a line")
            answer = {"id": _safe_id(line), "codes": [], "status": "error", "error": type(exc).__name__}
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()
    return 0


def _safe_id(line: str) -> Any:
    try:
        return json.loads(line).get("id")
    except Exception:
        return None


def _ensure_codes(engine: Engine) -> None:
    from consultant.models import Code

    if not inspect(engine).has_table(Code.__tablename__):
        from sqlmodel import SQLModel

        SQLModel.metadata.create_all(engine)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(Code.__table__)).scalar_one()
    if count == 0:
        from consultant.codes.loader import ensure_codes_loaded

        log.info("code table empty: loading the shipped code sets")
        ensure_codes_loaded(engine)


def main(argv: list[str] | None = None) -> int:
    from consultant.db import make_engine

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="consultant")
    sub = parser.add_subparsers(dest="command", required=True)
    add_suggest_parser(sub)
    args = parser.parse_args(argv)
    engine = make_engine(os.environ.get("CONSULTANT_DATABASE_URL", DEFAULT_DATABASE_URL))
    return run_suggest_command(args, engine)


if __name__ == "__main__":
    sys.exit(main())
