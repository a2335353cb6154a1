"""Run the benchmarks of issue 7 and print the headline figures as one JSON line (the last line).

    python bench/run.py --quick     # < 3 min: code load (SQLite), end to end on SQLite with its
                                    # transport baseline (2 rounds of 2,000 questions), matcher
                                    # over the samples + 1,000 questions
    python bench/run.py             # everything: also PostgreSQL with 1 and 2 workers, 3 rounds each,
                                    # 10,000 matcher questions, growth, light-load latency, charts

Needs what the tests need (README: Dovecot installed, PostgreSQL on 127.0.0.1:5432 with
trust auth and database `test`, or CONSULTANT_TEST_POSTGRES_URL), and `pip install -e '.[bench]'`
for the charts and py-spy. Full results go to bench/results/ (JSON), charts to docs/.
Figures are measured on a shared machine: each carries the machine's load while it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import codeload, corpus, e2e, servers
from bench.matcher import read_sample_cases, run_batch, slowest
from bench.procs import median
from consultant.db import make_engine

# the team's shared sample cases when the checkout sits beside them, else the copy in bench/eval/
_SAMPLE_PLACES = (ROOT.parent / "shared" / "eval", ROOT / "bench" / "eval")
SAMPLE_CASES = next((p / "sample_cases.jsonl" for p in _SAMPLE_PLACES if (p / "sample_cases.jsonl").exists()), None)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short report run (under 3 minutes)")
    parser.add_argument("--messages", type=int, help="questions per end-to-end round (default 2000)")
    parser.add_argument("--rounds", type=int, help="rounds per end-to-end setup (default 3; quick 2)")
    parser.add_argument("--profile", type=Path, help="py-spy the first SQLite worker into this file (raw stacks)")
    parser.add_argument("--skip", action="append", default=[], choices=["postgresql", "growth", "latency", "matcher"],
                        help="leave a part out (repeatable)")
    parser.add_argument("--reuse-template", type=Path, metavar="SQLITE",
                        help="skip the SQLite code load: clone this loaded database (its index cache beside it)")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results", help="where the JSON goes")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine_facts() -> dict:
    with open("/proc/cpuinfo") as fh:
        model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    return {
        "cpu": model, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 1e6, 1),
        "python": platform.python_version(), "python_executable": os.path.realpath(sys.executable),
        "os": platform.platform(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def run(args: argparse.Namespace) -> dict:
    quick = args.quick
    messages = args.messages or 2000  # quick too: a round of 400 weighed the start and the send tail 5x as much
    rounds = args.rounds or (2 if quick else 3)
    postgres = not quick and "postgresql" not in args.skip
    work = Path(tempfile.mkdtemp(prefix="cc-bench-"))
    os.environ["CONSULTANT_INDEX_DIR"] = str(work / "index")  # PostgreSQL workers' index caches
    results: dict = {"mode": "quick" if quick else "full", "machine": machine_facts(),
                     "command": "python bench/run.py" + (" --quick" if quick else ""), "messages": messages}
    pg_names: list[str] = []
    try:
        if args.reuse_template:
            template = work / "template.sqlite3"
            servers.clone_sqlite(args.reuse_template, template)
            results["code_load_sqlite"] = {"reused": str(args.reuse_template), "load_s": None}
        else:
            log("code load into SQLite (also the template the other parts clone)")
            template, results["code_load_sqlite"] = codeload.sqlite_template(work)
        pg_template = pg_cache = None
        if postgres:
            log("code load into PostgreSQL")
            pg_template, pg_cache, results["code_load_postgresql"] = codeload.pg_template()
            pg_names.append(pg_template)
        codes = corpus.load_code_sample(make_engine(f"sqlite:///{template}"))
        mail = corpus.generate_mail(messages, codes, to=servers.ADDRESS)
        expected = sum(m.answered for m in mail)
        results["mix"] = {kind: sum(m.kind == kind for m in mail) for kind, _ in corpus.MIX}
        server, sink = servers.start_dovecot(), servers.start_sink()
        try:
            results["e2e"] = run_e2e(args, work, server, sink, [m.raw for m in mail], expected, template,
                                     pg_template if postgres else None, pg_cache, rounds, pg_names)
            if "matcher" not in args.skip:
                log("matcher: suggest --batch")
                part(results, "matcher", run_matcher, work, template, codes, 1000 if quick else 10_000, full=not quick)
            if not quick and "growth" not in args.skip:
                part(results, "growth", run_growth, work, server, sink, template, codes)
            if not quick and "latency" not in args.skip:
                part(results, "latency", run_latency, work, server, sink, template, codes)
        finally:
            sink.stop()
            server.stop()
    finally:
        for name in pg_names:
            servers.pg_drop(name)
        shutil.rmtree(work, ignore_errors=True)
    return results


def part(results: dict, name: str, function, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    """Run one optional part; a failure is recorded in the results and the run goes on."""
    try:
        results[name] = function(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - one broken part must not lose the others' figures
        log(f"{name} failed: {type(exc).__name__}: {exc}")
        results.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"


def run_e2e(args, work, server, sink, raws, expected, template, pg_template, pg_cache, rounds, pg_names) -> dict:  # type: ignore[no-untyped-def]
    setups = [("transport", "bench.transport", 1, ""), ("sqlite-1", "bench.worker", 1, "sqlite")]
    if pg_template:
        setups += [("postgresql-1", "bench.worker", 1, "postgresql"), ("postgresql-2", "bench.worker", 2, "postgresql")]
    rounds_by_setup: dict[str, list[dict]] = {name: [] for name, *_ in setups}
    for number in range(rounds):
        for name, module, workers, database in setups:
            url = ""
            if database == "sqlite":
                url = servers.clone_sqlite(template, work / f"{name}-{number}.sqlite3")
            elif database == "postgresql":
                db_name = servers.new_name("ccbench")
                pg_names.append(db_name)
                url = servers.pg_create(db_name, template=pg_template)
                servers.copy_index_cache(pg_cache, url)
            profile = args.profile if (args.profile and name == "sqlite-1" and number == 0) else None
            log(f"end to end: {name}, round {number + 1} of {rounds}, {len(raws)} messages")
            figures = e2e.run_round(e2e.Setup(name, module, workers, url), server, sink, raws,
                                    expected_replies=expected, log_dir=work / "logs", profile=profile)
            log(f"  {figures['msgs_per_s']} msg/s, p95 {figures['latency_p95_s']} s")
            rounds_by_setup[name].append(figures)
            servers.empty_folder(server, "Processed")
    return {name: {"median": e2e.summarise(found), "rounds": found} for name, found in rounds_by_setup.items()}


def run_matcher(work: Path, template: Path, codes, generated: int, *, full: bool) -> dict:  # type: ignore[no-untyped-def]
    url = servers.clone_sqlite(template, work / "matcher.sqlite3")
    sets = {"generated": corpus.generate_texts(generated, codes)}
    if SAMPLE_CASES is not None:
        sets = {"sample": read_sample_cases(SAMPLE_CASES), **sets}
    figures = run_batch(url, sets, work=work)
    if full:
        figures["slowest"] = slowest(url, sets["generated"][:2000])
    return figures


def run_growth(work: Path, server, sink, template: Path, codes) -> dict:  # type: ignore[no-untyped-def]
    from bench import growth
    from consultant.services import build_services, open_engine
    from consultant.settings import load_settings

    log("growth: 50,000 messages into Processed")
    filler = [m.raw for m in corpus.generate_mail(2000, codes, to=servers.ADDRESS, seed=11, start=900_000)]
    servers.fill_maildir(server, "Processed", [filler[i % len(filler)] for i in range(50_000)])
    url = servers.clone_sqlite(template, work / "growth.sqlite3")
    settings = load_settings(e2e.worker_env(server, sink, url), env_file=None)
    engine = open_engine(settings)
    services = build_services(settings, engine)
    figures: dict = {"processed_messages": 50_000, "database": "sqlite", "sizes": []}
    seeded = 0
    for size in (0, 10_000, 100_000):
        if size > seeded:
            log(f"growth: history of {size:,} cases")
            growth.seed_history(engine, count=size - seeded, first_uid=seeded + 1)
            seeded = size
        batch = [m.raw for m in corpus.generate_mail(200, codes, to=servers.ADDRESS, seed=size + 1, start=size * 10)]
        history = growth.case_count(engine)
        found = growth.measure(services, server, sink, batch, polls=40)
        found["history_cases"] = history
        figures["sizes"].append(found)
        log(f"  empty poll p50 {found['empty_poll_p50_ms']} ms, {found['per_message_ms']} ms per message")
    services.inbox.close()
    engine.dispose()
    return figures


def run_latency(work: Path, server, sink, template: Path, codes) -> dict:  # type: ignore[no-untyped-def]
    """Light load twice: polling every 5 s without IDLE, then IDLE with the default 60 s poll."""
    from bench.latency import run_light_load

    figures = {}
    for mode, idle, poll_seconds, seed, start in (("polling", False, 5, 21, 800_000), ("idle", True, 60, 22, 810_000)):
        servers.empty_folder(server, "Processed")
        url = servers.clone_sqlite(template, work / f"latency-{mode}.sqlite3")
        questions = [m for m in corpus.generate_mail(60, codes, to=servers.ADDRESS, seed=seed, start=start)
                     if m.answered]
        log(f"light load, {mode}: {len(questions[:40])} questions, one every ~1.5 s, poll every {poll_seconds} s")
        figures[mode] = run_light_load(server, sink, questions[:40], database_url=url, poll_seconds=poll_seconds,
                                       mean_gap=1.5, work=work, idle=idle)
    return figures


def headline(results: dict) -> dict:
    """The JSON line CI prints: the figures the issue's targets are about."""
    e2e_figures = results["e2e"]
    ours = e2e_figures["sqlite-1"]["median"]["msgs_per_s"]
    transport = e2e_figures["transport"]["median"]["msgs_per_s"]
    line = {
        "mode": results["mode"],
        "e2e_msgs_per_s": ours,
        "transport_msgs_per_s": transport,
        "ratio": paired_ratio(e2e_figures, "sqlite-1", "transport"),
        "ratio_of_medians": round(ours / transport, 3) if transport else 0.0,
        "e2e_latency_p95_s": e2e_figures["sqlite-1"]["median"]["latency_p95_s"],
        "match_p95_ms": results.get("matcher", {}).get("generated", {}).get("p95_ms"),
        "match_sample_p95_ms": results.get("matcher", {}).get("sample", {}).get("p95_ms"),
        "peak_rss_mb": max(
            [e2e_figures[name]["median"]["worker_peak_rss_mb"] for name in e2e_figures if name != "transport"]
        ),
        "code_load_sqlite_s": results["code_load_sqlite"]["load_s"],
        "loadavg": median([r["machine"]["loadavg_before"] for r in e2e_figures["sqlite-1"]["rounds"]]),
    }
    if "postgresql-2" in e2e_figures:
        one = e2e_figures["postgresql-1"]["median"]["msgs_per_s"]
        line["pg_2_workers_vs_1"] = round(paired_ratio(e2e_figures, "postgresql-2", "postgresql-1"), 2)
        line["pg_2_workers_vs_1_of_medians"] = (
            round(e2e_figures["postgresql-2"]["median"]["msgs_per_s"] / one, 2) if one else 0)
    if "growth" in results:
        line["empty_poll_100k_ms"] = results["growth"]["sizes"][-1]["empty_poll_p95_ms"]
    if "latency" in results:
        line["light_load_p95_s"] = results["latency"]["polling"]["p95_s"]
        line["light_load_idle_p95_s"] = results["latency"]["idle"]["p95_s"]
    return line


def paired_ratio(e2e_figures: dict, ours: str, base: str) -> float:
    """The median over rounds of `ours` / `base` in the same round. The two run within seconds of
    each other, while this machine's speed drifts by a quarter between rounds (the helper's CPU
    for the same 2,000 questions: 3.96 s in one round, 4.96 s in the next), so a ratio taken
    within a round compares like with like; the ratio of the medians is in the JSON beside it."""
    pairs = zip(e2e_figures[ours]["rounds"], e2e_figures[base]["rounds"], strict=True)
    ratios = [a["msgs_per_s"] / b["msgs_per_s"] for a, b in pairs if b["msgs_per_s"]]
    return round(statistics.median(ratios), 3) if ratios else 0.0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    results = run(args)
    results["seconds"] = round(time.monotonic() - started, 1)
    results["headline"] = headline(results)
    args.results.mkdir(parents=True, exist_ok=True)
    name = f"{results['mode']}-{datetime.now(UTC).strftime('%Y%m%d-%H%M')}.json"
    (args.results / name).write_text(json.dumps(results, indent=1) + "\n")
    log(f"results in {args.results / name} ({results['seconds']} s)")
    if not args.quick:
        try:
            from bench.charts import draw_all

            draw_all(results, ROOT / "docs")
        except ImportError:
            log("matplotlib missing: no charts (pip install -e '.[bench]')")
    print(json.dumps(results["headline"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
