"""`llm-oncall demo`: synthetic traffic with injected faults through the real pipeline.

It writes the generated events to a file and replays them with the same code path as
`llm-oncall replay`, then prints what the on-call engineer would have received, next to
what was injected, so a newcomer sees in a minute what the daemon is for.
"""

from __future__ import annotations

import argparse
import gzip
import os
import tempfile
from typing import Any

import orjson

from config.settings import load_settings
from correlator.records import rfc3339
from daemon.replay import print_summary, replay
from daemon.simulate import EXPECTED_DOMAIN, default_scenario, generate

DEMO_START = 1_795_000_000.0  # a Tuesday (2026-11-17T07:06Z); fixed so the demo is repeatable


def run_demo(args: argparse.Namespace) -> int:
    from daemon.logs import configure

    configure("warning", "auto")
    settings = load_settings(None)
    features, injections = default_scenario(DEMO_START, args.hours)
    path = args.out or os.path.join(tempfile.mkdtemp(prefix="llm-oncall-demo-"), "events.jsonl.gz")
    opener: Any = gzip.open if path.endswith(".gz") else open
    count = 0
    with opener(path, "wb") as fh:
        for event in generate(DEMO_START, args.hours, features, injections, seed=args.seed):
            fh.write(orjson.dumps(event) + b"\n")
            count += 1
    print(f"generated {count} events over {args.hours:g} simulated hours → {path}\n")
    print("injected:")
    for inj in injections:
        expect = EXPECTED_DOMAIN.get(inj.kind, "no page (decoy)")
        print(f"  {rfc3339(inj.start)}  {inj.feature:<18} {inj.kind:<20} expect: {expect}")
    print()
    result = replay(path, settings)
    print_summary(result)
    print()
    for rec in result.incidents:
        if rec["severity"] == "watch":
            continue
        print(page_card(rec))
    return 0


def page_card(rec: dict[str, Any]) -> str:
    """The incident as the person paged reads it."""
    lines = [
        f"── {rec['severity'].upper()} · {rec['domain']} · {rec['feature']} "
        f"{'(paged)' if rec.get('paged') else '(not paged)'}",
        f"   {rec['summary']}",
        f"   opened {rec['opened_at']}, resolved {rec.get('resolved_at') or '—'}",
    ]
    for t in rec.get("triage", []):
        lines.append(f"   {'✔' if t['answer'] else '·'} {t['question']}: {t['evidence']}")
    for a in rec.get("attribution", [])[:3]:
        lines.append(
            f"   ↳ {a['label']}={a['value']}: {a['anomalous_share']:.0%} of anomalous traffic "
            f"vs {a['baseline_share']:.0%} before"
        )
    for ch in rec.get("changes", [])[:3]:
        lines.append(f"   ⟲ change {ch['kind']} at {ch['ts']}: {ch.get('description', '')}")
    return "\n".join(lines) + "\n"
