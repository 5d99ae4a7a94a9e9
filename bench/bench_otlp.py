"""OTLP spans/s ingested per encoding: protobuf and JSON, plain and gzip (issue 12).

    python bench/bench_otlp.py [--spans 100000] [--batch 512] [--repeat 3]

Two figures per encoding, medians of `--repeat` rounds:
- spans/s through `POST /v1/traces` against the real daemon process (one client sending
  batches back to back, as an SDK's BatchSpanProcessor does; 512 spans is its default batch),
  and the daemon's CPU-seconds per span from /proc (the machine is shared: CPU is steadier
  than wall time);
- spans/s of the decoding alone, in process (`otlp_proto.spans_to_events` on the bytes, or
  JSON parse + `otlp.spans_to_events`), then event validation, to show where the time goes.
Each span carries the attributes an instrumented LLM call has (provider, models, tokens,
finish reasons, a label), over 10 features (`service.name`).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from bench.bench_ingest import start_daemon, unused_events
from daemon.ingest import otlp, otlp_proto
from daemon.ingest.events import loads_lenient, validate_items

FEATURES = 10


def _kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        return {
            "key": key,
            "value": {"arrayValue": {"values": [{"stringValue": v} for v in value]}},
        }
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def make_request(n: int, now_ns: int) -> dict[str, Any]:
    """One ExportTraceServiceRequest (OTLP JSON form) of `n` LLM spans in the last minute."""
    per = max(1, n // FEATURES)
    resource_spans = []
    made = 0
    for f in range(FEATURES):
        spans = []
        for i in range(per if f < FEATURES - 1 else n - made):
            end = now_ns - (made * 60_000_000_000) // n
            spans.append(
                {
                    # Random ids, as real traces have (they matter for the gzip ratio).
                    "traceId": os.urandom(16).hex(),
                    "spanId": os.urandom(8).hex(),
                    "name": "chat gpt-4o",
                    "kind": 3,
                    "startTimeUnixNano": str(end - 700_000_000 - i * 1000),
                    "endTimeUnixNano": str(end),
                    "attributes": [
                        _kv("gen_ai.operation.name", "chat"),
                        _kv("gen_ai.provider.name", "openai"),
                        _kv("gen_ai.request.model", "gpt-4o"),
                        _kv("gen_ai.response.model", "gpt-4o-2024-08-06"),
                        _kv("gen_ai.usage.input_tokens", 1200 + i % 50),
                        _kv("gen_ai.usage.output_tokens", 180 + i % 20),
                        _kv("gen_ai.response.finish_reasons", ["stop"]),
                        _kv("llm_oncall.label.prompt_version", "v7"),
                    ],
                    "status": {},
                }
            )
            made += 1
        resource_spans.append(
            {
                "resource": {"attributes": [_kv("service.name", f"feature-{f}")]},
                "scopeSpans": [
                    {"scope": {"name": "opentelemetry.instrumentation.openai"}, "spans": spans}
                ],
            }
        )
    return {"resourceSpans": resource_spans}


ENCODINGS = ("protobuf", "protobuf+gzip", "json", "json+gzip")


def encode(doc: dict[str, Any], encoding: str) -> tuple[bytes, dict[str, str]]:
    if encoding.startswith("protobuf"):
        body = ParseDict(doc, ExportTraceServiceRequest()).SerializeToString()
        headers = {"Content-Type": "application/x-protobuf"}
    else:
        body = orjson.dumps(doc)
        headers = {"Content-Type": "application/json"}
    if encoding.endswith("+gzip"):
        body = gzip.compress(body, compresslevel=6)
        headers["Content-Encoding"] = "gzip"
    return body, headers


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def post_all(port: int, bodies: list[bytes], headers: dict[str, str]) -> float:
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/traces"
    async with aiohttp.ClientSession() as session:
        t = time.perf_counter()
        for body in bodies:
            async with session.post(url, data=body, headers=headers) as resp:
                answer = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"POST answered {resp.status}: {answer[:300]!r}")
        return time.perf_counter() - t


def bench_http(spans: int, batch: int, repeat: int) -> dict[str, tuple[float, float, int]]:
    out: dict[str, tuple[list[float], list[float], int]] = {e: ([], [], 0) for e in ENCODINGS}
    with tempfile.TemporaryDirectory() as state:
        proc, port = start_daemon(state)
        try:
            for _ in range(repeat):
                for encoding in ENCODINGS:
                    now_ns = time.time_ns()
                    docs = [make_request(batch, now_ns) for _ in range(spans // batch)]
                    encoded = [encode(d, encoding) for d in docs]
                    bodies = [b for b, _ in encoded]
                    cpu = cpu_seconds(proc.pid)
                    elapsed = asyncio.run(post_all(port, bodies, encoded[0][1]))
                    used = cpu_seconds(proc.pid) - cpu
                    n = len(bodies) * batch
                    rates, cpus, _ = out[encoding]
                    rates.append(n / elapsed)
                    cpus.append(used / n)
                    out[encoding] = (rates, cpus, sum(len(b) for b in bodies) // len(bodies))
            unused = unused_events(port)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    if unused:
        print(f"warning: the daemon counted {unused:.0f} events as unused (late/future)")
    return {e: (statistics.median(r), statistics.median(c), s) for e, (r, c, s) in out.items()}


def bench_decode(batch: int, repeat: int) -> dict[str, tuple[float, float]]:
    """Decoding alone, and decoding + validation, spans/s (no HTTP, no pipeline)."""
    doc = make_request(batch, time.time_ns())
    out: dict[str, tuple[float, float]] = {}
    for encoding in ("protobuf", "json"):
        body, _ = encode(doc, encoding)

        def read(body: bytes = body, encoding: str = encoding) -> otlp.Spans:
            if encoding == "protobuf":
                return otlp_proto.spans_to_events(body)
            return otlp.spans_to_events(loads_lenient(body))

        decode, full = [], []
        for _ in range(repeat):
            rounds = max(1, 20_000 // batch)
            t = time.perf_counter()
            for _ in range(rounds):
                read()
            decode.append(rounds * batch / (time.perf_counter() - t))
            t = time.perf_counter()
            for _ in range(rounds):
                assert not validate_items(read().events)[1]
            full.append(rounds * batch / (time.perf_counter() - t))
        out[encoding] = (statistics.median(decode), statistics.median(full))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=100_000, help="spans per encoding and round")
    ap.add_argument("--batch", type=int, default=512, help="spans per request")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    for encoding, (decode, full) in bench_decode(args.batch, args.repeat).items():
        print(f"decode {encoding:>8}: {decode:>9,.0f} spans/s, with validation {full:>9,.0f}")
    results = bench_http(args.spans, args.batch, args.repeat)
    for encoding, (rate, cpu, size) in results.items():
        print(
            f"POST /v1/traces {encoding:>13}: {rate:>8,.0f} spans/s, "
            f"{cpu * 1e6:5.1f} daemon CPU-µs/span, {size / args.batch:5.0f} bytes/span "
            f"(median of {args.repeat}, batches of {args.batch})"
        )


if __name__ == "__main__":
    main()
