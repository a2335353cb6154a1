"""Charts for docs/BENCHMARKS.md from a full run's results (matplotlib, the `bench` extra).

    python -m bench.charts bench/results/full-....json    # redraw from a saved run

bench-throughput.png  messages/s per setup (median, whiskers min..max over rounds), target line
bench-latency.png     end-to-end p50/p95 per setup; light-load arrival-to-reply; matcher percentiles
bench-growth.png      empty poll and per-message cost against the cases of history
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TARGET_MSGS = 200
SETUPS = ("transport", "sqlite-1", "postgresql-1", "postgresql-2")


def draw_throughput(results: dict, out: Path) -> None:
    e2e = results["e2e"]
    names = [n for n in SETUPS if n in e2e]
    medians = [e2e[n]["median"]["msgs_per_s"] for n in names]
    lows = [m - min(e2e[n]["median"]["msgs_per_s_all"]) for n, m in zip(names, medians)]
    highs = [max(e2e[n]["median"]["msgs_per_s_all"]) - m for n, m in zip(names, medians)]
    fig, ax = plt.subplots(figsize=(7, 4))
    bars = ax.bar(names, medians, yerr=[lows, highs], capsize=4,
                  color=["#999999"] + ["#3a7bd5"] * (len(names) - 1))
    ax.bar_label(bars, labels=[f"{m:.0f}" for m in medians], padding=3)
    ax.axhline(TARGET_MSGS, color="#c0392b", linestyle="--", linewidth=1)
    ax.text(len(names) - 0.5, TARGET_MSGS, f"target {TARGET_MSGS}/s", color="#c0392b", ha="right", va="bottom")
    ax.set_ylabel("messages per second")
    ax.set_title(f"End to end, {results['messages']} questions (median of {e2e['sqlite-1']['median']['rounds']})")
    fig.tight_layout()
    fig.savefig(out / "bench-throughput.png", dpi=110)
    plt.close(fig)


def draw_latency(results: dict, out: Path) -> None:
    e2e = results["e2e"]
    panels = 1 + len(results.get("latency", {})) + ("matcher" in results)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4))
    axes = list(axes) if panels > 1 else [axes]
    ax = axes.pop(0)
    names = [n for n in SETUPS if n in e2e]
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [e2e[n]["median"]["latency_p50_s"] for n in names], 0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], [e2e[n]["median"]["latency_p95_s"] for n in names], 0.4, label="p95")
    ax.set_xticks(list(xs), names, rotation=20)
    ax.set_ylabel("seconds from start to reply")
    ax.set_title(f"Backlog of {results['messages']}")
    ax.legend()
    for mode, light in results.get("latency", {}).items():
        ax = axes.pop(0)
        ax.hist(light["latencies_s"], bins=20, color="#3a7bd5")
        ax.axvline(light["target_s"], color="#c0392b", linestyle="--", linewidth=1)
        ax.axvline(light["p95_s"], color="black", linewidth=1)
        ax.set_xlabel(f"arrival to reply, s (poll {light['poll_seconds']} s; p95 {light['p95_s']:.2f})")
        ax.set_ylabel("questions")
        ax.set_title(f"Light load, {'IMAP IDLE' if mode == 'idle' else 'polling only'}")
    if "matcher" in results:
        ax = axes.pop(0)
        matcher = results["matcher"]
        sets = [s for s in ("sample", "generated") if s in matcher]
        for offset, pct in ((-0.25, "p50_ms"), (0.0, "p95_ms"), (0.25, "p99_ms")):
            ax.bar([i + offset for i in range(len(sets))], [matcher[s][pct] for s in sets], 0.25, label=pct[:3])
        ax.axhline(20, color="#c0392b", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(sets)), [f"{s} ({matcher[s]['cases']})" for s in sets])
        ax.set_ylabel("ms per question")
        ax.set_title("Matcher, suggest --batch")
        ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "bench-latency.png", dpi=110)
    plt.close(fig)


def draw_growth(results: dict, out: Path) -> None:
    sizes = results["growth"]["sizes"]
    history = [s["history_cases"] for s in sizes]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(history, [s["empty_poll_p95_ms"] for s in sizes], marker="o", label="empty poll p95, ms")
    ax.plot(history, [s["per_message_ms"] for s in sizes], marker="s", label="per message, ms")
    ax.axhline(50, color="#c0392b", linestyle="--", linewidth=1)
    ax.set_xlabel("cases already in the database (50,000 messages in Processed)")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title("Growth")
    fig.tight_layout()
    fig.savefig(out / "bench-growth.png", dpi=110)
    plt.close(fig)


def draw_all(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    draw_throughput(results, out)
    draw_latency(results, out)
    if "growth" in results:
        draw_growth(results, out)


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    draw_all(json.loads(Path(sys.argv[1]).read_text()), root / "docs")
