"""The four layers: from events to per-feature metric samples, and the rules that watch them.

This room is pure, like `detectors/` and `correlator/`: no I/O, no clock reads, no asyncio.
Time arrives as an argument (the tick's `now`, an event's `ts`), so the same code runs live
and in replay. The pipeline reads as folders: ingest (`daemon/ingest/`: `events.py`,
`otlp.py`, `alertmanager.py`) → layers (here) → `detectors/` → `correlator/` → notify
(`daemon/notify/`).

- `aggregator`: per-feature buckets and trailing windows, the layer metrics, capped dimensions.
- `sketch`: fixed-memory latency quantiles (log-bucket histogram).
- `rules`: which detectors watch which series (configured rules over per-layer defaults).
"""
