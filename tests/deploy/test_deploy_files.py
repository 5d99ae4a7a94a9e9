"""The deploy files agree with the daemon they deploy.

- every YAML and the dashboard JSON parse;
- every `llm_oncall_*` series in the Prometheus rules and the Grafana dashboard is one the
  daemon exposes, with the suffix its type gives it (`_total` on counters, `_bucket`/`_sum`/
  `_count` on histograms, none on gauges), and label matchers name labels the family has;
- every `llm_oncall:*` recording rule the dashboard uses is defined in rules.yaml;
- the Kubernetes manifest's port and probe paths are the app's routes, its config validates;
- the Dockerfile exposes, runs and checks what the package provides.

Metric names come from the real registry: a `Daemon` built on a temporary state file, fed one
event of each kind so that families carry their labels. If the daemon cannot be imported (other
modules still in progress), the names are read from the collector sources instead.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yaml"
SCRAPE = DEPLOY / "prometheus" / "scrape.yaml"
SCRAPE_K8S = DEPLOY / "prometheus" / "kubernetes.yaml"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
MANIFEST = DEPLOY / "kubernetes" / "sidecar.yaml"
DASHBOARD = DEPLOY / "grafana" / "llm-oncall.json"
DOCKERFILE = ROOT / "Dockerfile"
APP_SRC = ROOT / "daemon" / "app.py"
SIDECAR = "llm-oncall"
PORT = 9477

SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
METRIC_RE = re.compile(r"(?<![\w:])llm_oncall_[A-Za-z0-9_]+")
RECORDED_RE = re.compile(r"(?<![\w:])llm_oncall:[A-Za-z0-9_:]+")
SELECTOR_RE = re.compile(r"(?<![\w:])(llm_oncall_[A-Za-z0-9_]+)\{([^}]*)\}")
# Labels Prometheus adds to every scraped series (the job, and the scrape configs' relabelling
# or targets files): valid in any selector, though the daemon does not expose them.
TARGET_LABELS = {"__name__", "job", "instance", "namespace", "pod", "app"}
MATCHER_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")


@dataclass
class Family:
    type: str
    labels: set[str] | None = None  # None: not known (no samples to read them from)


@dataclass
class Exposed:
    families: dict[str, Family]
    source: str
    series: dict[str, str] = field(init=False)  # exposed series name -> family name

    def __post_init__(self) -> None:
        self.series = {
            name + suffix: name
            for name, fam in self.families.items()
            for suffix in SUFFIXES[fam.type]
        }


# ---- what the daemon exposes -----------------------------------------------------------------


def _from_registry(tmp: Path) -> Exposed:
    import structlog

    from config.settings import Settings
    from daemon.app import Daemon
    from daemon.ingest.events import parse_body

    now = 1_700_000_000.0
    daemon = Daemon(
        Settings(state={"path": tmp / "state.db"}),
        structlog.get_logger("test-deploy"),
        clock=lambda: now + 60,
    )
    try:
        events = [
            {"type": "llm_call", "ts": now - 30, "feature": "f", "provider": "p", "model": "m",
             "latency_ms": 120, "status": 200, "input_tokens": 3, "output_tokens": 4,
             "cost_usd": 0.01, "refused": True, "format_ok": False, "retries": 1},
            {"type": "score", "ts": now - 30, "feature": "f", "name": "s", "value": 0.5},
        ]  # fmt: skip
        parsed, _ = parse_body(json.dumps(events).encode(), "application/json")
        daemon.handle(daemon.pipeline.ingest(parsed, now=now))
        daemon.handle(daemon.pipeline.advance(now + 60))
        daemon.rejected["invalid"] = 1
        families: dict[str, Family] = {}
        for fam in daemon.registry.collect():
            labels = {k for s in fam.samples for k in s.labels} or None
            families[fam.name] = Family(fam.type, labels)
        # prometheus_client wrappers without children have no samples; their label names
        # are on the wrapper.
        for wrapper in vars(getattr(daemon.paging, "metrics", None) or object()).values():
            name, names = getattr(wrapper, "_name", None), getattr(wrapper, "_labelnames", None)
            if name in families and families[name].labels is None and names is not None:
                extra = {"le"} if families[name].type == "histogram" else set()
                families[name].labels = set(names) | extra
        return Exposed(families, "registry")
    finally:
        daemon.store.close()


_FAMILY_SRC = re.compile(r"\b(Counter|Gauge|Histogram)MetricFamily\(\s*P\s*\+\s*\"(\w+)\"")
_LOOP_SRC = re.compile(r"for name, help_text, data in \((.*?)\):", re.S)
_WRAPPER_SRC = re.compile(r"\b(Counter|Gauge|Histogram)\(\s*\"(llm_oncall_\w+)\"")


def _from_source() -> Exposed:
    """Family names and types read from the collector sources (no labels)."""
    families: dict[str, Family] = {}
    expo = (ROOT / "daemon" / "exposition.py").read_text()
    prefix = re.search(r'^P = "(\w+)"', expo, re.M)
    assert prefix, 'daemon/exposition.py: no `P = "llm_oncall_"` prefix'
    for kind, name in _FAMILY_SRC.findall(expo):
        families[prefix.group(1) + name] = Family(kind.lower())
    health = ROOT / "daemon" / "health.py"  # the daemon's own health (tick errors)
    if health.exists():
        for kind, name in _FAMILY_SRC.findall(health.read_text()):
            families[prefix.group(1) + name] = Family(kind.lower())
    for block in _LOOP_SRC.findall(expo):  # counters built in a loop over (name, help, data)
        for name in re.findall(r"\(\s*\"(\w+)\"", block):
            families[prefix.group(1) + name] = Family("counter")
    notify = ROOT / "daemon" / "notify" / "metrics.py"
    if notify.exists():
        for kind, name in _WRAPPER_SRC.findall(notify.read_text()):
            families[name] = Family(kind.lower())
    return Exposed(families, "source")


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> Exposed:
    try:
        return _from_registry(tmp_path_factory.mktemp("state"))
    except ImportError:
        return _from_source()


def test_source_fallback_agrees_with_registry(tmp_path: Path) -> None:
    try:
        real = _from_registry(tmp_path)
    except ImportError as exc:
        pytest.skip(f"daemon not importable yet ({exc}); the deploy tests use the sources")
    fallback = _from_source()
    assert {n: f.type for n, f in fallback.families.items()} == {
        n: f.type for n, f in real.families.items()
    }


# ---- parsing ---------------------------------------------------------------------------------


def _yaml_files() -> list[Path]:
    return sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path}: empty"


def test_dashboard_parses() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "pod", "feature"):
        assert variables[name]["type"] == "query", name
        assert variables[name]["allValue"] == ".*", f"{name}: All must match an absent label"
    namespace = variables["namespace"]["definition"]
    assert namespace == 'label_values(up{job=~"llm-oncall.*"}, namespace)'
    assert variables["feature"]["definition"].startswith("label_values(llm_oncall:llm_requests:")
    annotations = {a["name"]: a for a in dash["annotations"]["list"]}
    assert "llm_oncall_incidents_open" in annotations["Incidents"]["expr"]
    assert 'type="change"' in annotations["Changes"]["expr"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    rows = [p["title"].split(":")[0].lower() for p in dash["panels"] if p["type"] == "row"]
    assert rows == ["infra", "api", "behavioral", "quality", "on-call"]


# ---- metric names ----------------------------------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", []) if t.get("expr")]
    exprs += [v.get("definition", "") for v in dash["templating"]["list"]]
    exprs += [a["expr"] for a in dash["annotations"]["list"] if a.get("expr")]
    return exprs


def _check_names(text: str, where: str, exposed: Exposed) -> list[str]:
    errors = []
    for name in sorted(set(METRIC_RE.findall(text))):
        if name not in exposed.series:
            fam = exposed.families.get(name)
            hint = f" (a {fam.type}: use {name}{SUFFIXES[fam.type][0]})" if fam else ""
            errors.append(f"{where}: {name} is not exposed by the daemon{hint}")
    for name, matchers in SELECTOR_RE.findall(text):
        fam = exposed.families.get(exposed.series.get(name, ""))
        if fam is None or fam.labels is None:
            continue
        for label in MATCHER_RE.findall(matchers):
            if label not in fam.labels | TARGET_LABELS:
                errors.append(f"{where}: {name} has no label {label!r} ({sorted(fam.labels)})")
    return errors


def test_rules_use_exposed_metrics(exposed: Exposed) -> None:
    errors = []
    for rule in _rules():
        where = f"rules.yaml {rule.get('record') or rule.get('alert')} ({exposed.source})"
        errors += _check_names(rule["expr"], where, exposed)
        # Annotations point on-call at metrics too; those must exist as well.
        errors += _check_names(json.dumps(rule.get("annotations", {})), where, exposed)
    assert not errors, "\n".join(errors)


def test_dashboard_uses_exposed_metrics(exposed: Exposed) -> None:
    errors = []
    for expr in _dashboard_exprs():
        errors += _check_names(expr, f"dashboard {expr[:60]!r} ({exposed.source})", exposed)
    assert not errors, "\n".join(errors)


def test_recorded_series_are_defined() -> None:
    rules = _rules()
    records = [r["record"] for r in rules if "record" in r]
    assert len(records) == len(set(records)), "duplicate recording rule names"
    for name in records:
        assert re.fullmatch(r"llm_oncall:[a-z0-9_]+:[a-z0-9_]+", name), f"{name}: level:metric:ops"
    used = {n for e in _dashboard_exprs() for n in RECORDED_RE.findall(e)}
    used |= {n for r in rules for n in RECORDED_RE.findall(r["expr"])}
    assert used <= set(records), f"undefined recording rules: {sorted(used - set(records))}"


def test_dashboard_reads_the_cross_pod_aggregates_from_the_recording_rules() -> None:
    """deploy/README says the recording rules feed the dashboard: the panels that sum the
    pods' raw LLM counters must read the rules, not recompute them; and every panel and
    annotation selects on the namespace variable. (That each expression also evaluates on a
    real Prometheus with these rules is tests/integration/test_prometheus.py.)"""
    dash = json.loads(DASHBOARD.read_text())
    used = {n for e in _dashboard_exprs() for n in RECORDED_RE.findall(e)}
    records = {r["record"] for r in _rules() if "record" in r}
    unused = (
        records
        - used
        - {
            "llm_oncall:llm_requests_by_model:rate5m",  # for central mode and your SLO alerts
            "llm_oncall:llm_request_duration_seconds:mean5m",
            "llm_oncall:llm_cost_usd_by_model:rate5m",
        }
    )
    assert not unused, f"recording rules the dashboard does not show: {sorted(unused)}"
    raw = re.compile(r"\b(llm_oncall_llm_\w+?)(?:_total|_bucket|_sum|_count)?\b")
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            assert "$namespace" in expr, f"panel {panel['title']!r}: no namespace filter"
            assert not raw.search(expr), f"panel {panel['title']!r} sums raw counters: {expr}"
    for annotation in dash["annotations"]["list"]:
        if annotation.get("expr"):
            assert "$namespace" in annotation["expr"], annotation["name"]


def test_required_rules_present() -> None:
    rules = _rules()
    records = {r["record"] for r in rules if "record" in r}
    assert "llm_oncall:llm_requests:rate5m" in records
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    exprs = " ".join(r["expr"] for r in alerts.values())
    for needle in (
        "up{",
        'llm_oncall_notifications_total{result="dead"}',
        "llm_oncall_outbox_oldest_pending_age_seconds > 600",
        "llm_oncall_pipeline_lag_seconds > 120",
        "llm_oncall_events_rejected_total",
    ):
        assert needle in exprs, f"no meta-alert on {needle}"
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"].get("summary"), name


def test_promtool_checks_the_shipped_rules_and_scrape_config() -> None:
    """`.ci/run` installs Debian's `prometheus` for promtool. scrape.yaml is checked as
    shipped (with its rule file and targets); Debian builds Prometheus without the Kubernetes
    service discovery, so kubernetes.yaml is checked by `test_kubernetes_scrape_config`."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not on PATH (.ci/run installs Debian's prometheus)")
    for args in (["check", "rules", str(RULES)], ["check", "config", str(SCRAPE)]):
        res = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "WARNING" not in res.stdout + res.stderr, res.stdout + res.stderr


def test_amtool_checks_the_alertmanager_example() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool is not on PATH (.ci/run installs Debian's prometheus-alertmanager)")
    res = subprocess.run(
        [amtool, "check-config", str(ALERTMANAGER)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_alertmanager_example_routes_only_alerts_with_a_feature() -> None:
    """The daemon's own meta-alerts carry no feature label: the route must not send them back
    into the daemon they are about."""
    config = yaml.safe_load(ALERTMANAGER.read_text())
    route = next(r for r in config["route"]["routes"] if r["receiver"] == "llm-oncall")
    assert route["matchers"] == ['feature=~".+"'] and route.get("continue") is True
    receiver = next(r for r in config["receivers"] if r["name"] == "llm-oncall")
    hook = receiver["webhook_configs"][0]
    assert hook["url"].endswith(f":{PORT}/v1/alertmanager") and hook["send_resolved"] is True
    assert "/v1/alertmanager" in {
        route for route in re.findall(r"add_post\(\s*\"([^\"]+)\"", APP_SRC.read_text())
    }
    for rule in _rules():
        if "alert" in rule:
            assert "feature" not in rule.get("labels", {}), rule["alert"]


# ---- Prometheus scrape config ----------------------------------------------------------------


def _job_regex() -> str:
    up_regex = next(r["expr"] for r in _rules() if r.get("alert") == "LLMOncallDown")
    job_re = re.search(r'job=~"([^"]+)"', up_regex)
    assert job_re, "LLMOncallDown should select the scrape jobs by job=~"
    return job_re.group(1)


def test_scrape_config_targets_the_daemon() -> None:
    scrape = yaml.safe_load(SCRAPE.read_text())
    assert scrape["rule_files"] == ["rules.yaml"] and (SCRAPE.parent / "rules.yaml") == RULES
    jobs = scrape["scrape_configs"]
    assert len(jobs) == 1, "one job: two jobs on one daemon would double the recording rules"
    job = jobs[0]
    assert re.fullmatch(_job_regex(), job["job_name"]), job["job_name"]
    assert "kubernetes_sd_configs" not in job, "Debian's Prometheus has no Kubernetes SD"
    files = [f for sd in job["file_sd_configs"] for f in sd["files"]]
    targets = [p for pattern in files for p in SCRAPE.parent.glob(pattern)]
    assert targets, f"no targets file matches {files}"
    for path in targets:
        for group in yaml.safe_load(path.read_text()):
            assert all(t.endswith(f":{PORT}") for t in group["targets"]), group


def test_kubernetes_scrape_config() -> None:
    jobs = yaml.safe_load(SCRAPE_K8S.read_text())["scrape_configs"]
    for job in jobs:
        assert re.fullmatch(_job_regex(), job["job_name"]), job["job_name"]
    k8s = next(j for j in jobs if "kubernetes_sd_configs" in j)
    assert k8s["kubernetes_sd_configs"][0]["role"] == "pod"
    keeps = {
        tuple(r["source_labels"]): r["regex"]
        for r in k8s["relabel_configs"]
        if r.get("action") == "keep"
    }
    assert keeps[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)] == "true"
    assert keeps[("__meta_kubernetes_pod_container_name",)] == SIDECAR
    # The dashboard's variables select on these labels.
    assert {"namespace", "pod"} <= {r.get("target_label") for r in k8s["relabel_configs"]}
    text = " ".join(SCRAPE_K8S.read_text().split())
    assert "needs a Prometheus built with the Kubernetes service discovery" in text


# ---- Kubernetes manifest ---------------------------------------------------------------------


def _manifest() -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in yaml.safe_load_all(MANIFEST.read_text()):
        if doc:
            by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def _sidecar(pod: dict[str, Any]) -> dict[str, Any]:
    containers = pod.get("containers", []) + pod.get("initContainers", [])
    return next(c for c in containers if c["name"] == SIDECAR)


def _app_routes() -> set[str]:
    src = (ROOT / "daemon" / "app.py").read_text()
    return set(re.findall(r"add_get\(\s*\"([^\"]+)\"", src))


def _default_port() -> int:
    try:
        from config.settings import ListenConfig
    except ImportError:
        src = (ROOT / "config" / "settings.py").read_text()
        return int(re.search(r"port: int = Field\((\d+)", src).group(1))  # type: ignore[union-attr]
    return ListenConfig().port


def test_port_is_the_daemon_default() -> None:
    assert _default_port() == PORT


def test_manifest_probes_and_port_match_the_app() -> None:
    routes = _app_routes()
    assert {"/healthz", "/readyz", "/metrics"} <= routes
    deploy = _manifest()["Deployment"][0]
    pod = deploy["spec"]["template"]["spec"]
    side = _sidecar(pod)
    ports = {p.get("name"): p["containerPort"] for p in side["ports"]}
    assert PORT in ports.values()

    def resolve(port: int | str) -> int:
        return ports[port] if isinstance(port, str) else port

    assert side["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert side["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe in side:
            assert side[probe]["httpGet"]["path"] in routes
            assert resolve(side[probe]["httpGet"]["port"]) == PORT
    if side in pod.get("initContainers", []):
        assert side.get("restartPolicy") == "Always", "an init container sidecar needs it"

    annotations = deploy["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(PORT)
    assert annotations["prometheus.io/path"] == "/metrics"
    assert pod["terminationGracePeriodSeconds"] == 15
    app_src = (ROOT / "daemon" / "app.py").read_text()
    shutdown = re.search(r"SHUTDOWN_TIMEOUT_S = ([\d.]+)", app_src)
    if shutdown:
        assert pod["terminationGracePeriodSeconds"] > float(shutdown.group(1))

    res = side["resources"]
    assert res["requests"] and res["limits"]
    mounts = {m["mountPath"]: m["name"] for m in side["volumeMounts"]}
    env = {e["name"]: e for e in side.get("env", [])}
    state_dir = str(Path(env["LLM_ONCALL_STATE__PATH"]["value"]).parent)
    assert state_dir in mounts, "the state directory must be a volume"

    service = _manifest()["Service"][0]
    svc_port = service["spec"]["ports"][0]
    assert svc_port["port"] == PORT and resolve(svc_port["targetPort"]) == PORT
    selector = service["spec"]["selector"]
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()


def test_manifest_env_names_settings() -> None:
    try:
        from config.settings import Settings
    except ImportError as exc:
        pytest.skip(f"config.settings not importable: {exc}")
    side = _sidecar(_manifest()["Deployment"][0]["spec"]["template"]["spec"])
    for item in side.get("env", []):
        name = item["name"]
        if name.startswith("LLM_ONCALL_"):
            top = name.removeprefix("LLM_ONCALL_").split("__")[0].lower()
            assert top in Settings.model_fields, f"{name}: no setting {top!r}"


def test_manifest_config_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        from config.settings import ConfigError, load_settings
    except ImportError as exc:
        pytest.skip(f"config.settings not importable: {exc}")
    cm = next(c for c in _manifest()["ConfigMap"] if "config.yaml" in c["data"])
    text = cm["data"]["config.yaml"]
    side = _sidecar(_manifest()["Deployment"][0]["spec"]["template"]["spec"])
    secret_mount = next(m["mountPath"] for m in side["volumeMounts"] if "secret" in m["name"])
    # Secret files are read at load: point them at stand-ins of the right shape.
    for path in sorted(set(re.findall(r"_file:\s*(\S+)", text))):
        assert path.startswith(secret_mount + "/"), f"{path} is not under {secret_mount}"
        stand_in = tmp_path / Path(path).name
        stand_in.write_text("0123456789abcdef0123456789abcdef\n")
        text = text.replace(path, str(stand_in))
    config = tmp_path / "config.yaml"
    config.write_text(text)
    for key in [k for k in __import__("os").environ if k.startswith("LLM_ONCALL_")]:
        monkeypatch.delenv(key)
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        pytest.fail(f"the ConfigMap's config.yaml does not validate:\n{exc}")
    assert settings.listen.port == PORT


# ---- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text()
    lines = [ln.strip() for ln in text.replace("\\\n", " ").splitlines()]
    instr = [ln for ln in lines if ln and not ln.startswith("#")]

    def last(keyword: str) -> str:
        found = [ln.split(None, 1)[1] for ln in instr if ln.upper().startswith(keyword + " ")]
        assert found, f"Dockerfile has no {keyword}"
        return found[-1]

    assert [ln.split()[1] for ln in instr if ln.startswith("FROM ")][-1] == "python:3.11-slim"
    assert sum(ln.startswith("FROM ") for ln in instr) >= 2, "multi-stage"
    assert last("EXPOSE").split() == [str(PORT)]
    assert _default_port() == PORT
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(last("ENTRYPOINT")) == ["llm-oncall"] and "llm-oncall" in scripts
    assert json.loads(last("CMD")) == ["run"]
    assert last("STOPSIGNAL") == "SIGTERM"
    assert "/healthz" in last("HEALTHCHECK") and "/healthz" in _app_routes()
    assert last("USER").split(":")[0] not in {"0", "root"}
    assert "pip install ." in text
    assert "LLM_ONCALL_STATE__PATH=/var/lib/llm-oncall/state.db" in text


def test_dockerignore_keeps_the_packages() -> None:
    """Every package pyproject installs is copied into the image and not ignored."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    docker = DOCKERFILE.read_text()
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for pkg in packages:
        assert re.search(rf"^COPY {pkg} \./{pkg}$", docker, re.M), f"Dockerfile does not copy {pkg}"
        assert f"!{pkg}/" in ignore, f".dockerignore drops {pkg}/"
    readme = pyproject["project"].get("readme")
    if readme:
        assert f"!{readme}" in ignore and readme in docker
