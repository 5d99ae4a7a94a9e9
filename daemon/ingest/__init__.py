"""Ingest adapters: each turns one wire format into the event contract, and nothing else.

- `events`: the event contract itself (DESIGN.md "Event contract"): body formats, gzip, and
  validation of `POST /v1/events` and replay input into typed `Event` records.
- `jsonscan`: the top level of a JSON array found without parsing it, for `events` (the item
  cap is checked before a parse; an item too deep for the JSON reader is read apart).
- `otlp`: OTLP/HTTP traces (JSON, and protobuf decoded into the same shape) → `llm_call`
  event dicts, validated by `events`.
- `alertmanager`: Alertmanager webhook payloads → correlator signals.

No adapter talks to the pipeline, the store or the network: the HTTP handlers in
`daemon/app.py` read the body, call an adapter, and hand its records on.
"""
