"""deploy/otel-collector.yaml: a Collector pipeline that forwards LLM spans to the sidecar.

No Collector binary is installed in CI, so this checks what `otelcol validate` would and what
ties the file to this daemon: every component a pipeline names is defined, the llm-oncall
exporter targets the daemon's default port and its real `/v1/traces` route, and sends an
encoding and compression the daemon accepts (the exporter tests send both to the daemon).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import yaml

from config.settings import Settings
from daemon.app import OTLP_PROTOBUF_TYPES, Daemon

COLLECTOR = Path(__file__).resolve().parents[2] / "deploy" / "otel-collector.yaml"


def test_pipelines_name_defined_components() -> None:
    conf = yaml.safe_load(COLLECTOR.read_text())
    pipelines = conf["service"]["pipelines"]
    assert pipelines
    for name, pipe in pipelines.items():
        assert name.split("/")[0] == "traces"
        for kind in ("receivers", "processors", "exporters"):
            for component in pipe.get(kind, []):
                assert component in conf[kind], f"{name}: {kind} {component!r} is not defined"


def test_exporter_targets_the_daemon(tmp_path: Path) -> None:
    conf = yaml.safe_load(COLLECTOR.read_text())
    exporter = conf["exporters"]["otlphttp/llm_oncall"]
    url = urlparse(exporter["traces_endpoint"])
    settings = Settings(state={"path": tmp_path / "state.db"})
    assert url.port == settings.listen.port
    daemon = Daemon(settings)
    try:
        routes = {
            (r.method, r.resource.canonical)
            for r in daemon.build_app().router.routes()
            if r.resource is not None
        }
    finally:
        daemon.store.close()
    assert ("POST", url.path) in routes
    # The Collector's otlphttp encodings: proto sends application/x-protobuf, json JSON.
    assert exporter.get("encoding", "proto") in ("proto", "json")
    assert "application/x-protobuf" in OTLP_PROTOBUF_TYPES
    assert exporter.get("compression", "gzip") in ("gzip", "none")
    traces = conf["service"]["pipelines"]["traces/llm_oncall"]
    assert "otlphttp/llm_oncall" in traces["exporters"]
