"""The Grafana dashboards as code: one per service and one of the whole loop, built with
grafana-foundation-sdk (pinned in pyproject's `test` extra) and written to
deploy/grafana/dashboards/<uid>.json, which compose and the swarm stack provision.

    .venv/bin/python deploy/grafana/generate.py           # write the JSON
    .venv/bin/python deploy/grafana/generate.py --check   # fail if the committed JSON is stale

Every panel reads metrics the services export (tests/deploy/test_dashboards.py checks each
query's PromQL and that its metrics exist in the services' registries)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as kinds
from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")  # provisioning/datasources/prometheus.yml
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    description: str = ""


def q(expr: str, legend: str = "") -> Query:
    return Query(" ".join(expr.split()), legend)


def p95(metric: str, by: str = "", selector: str = "") -> str:
    return f"histogram_quantile(0.95, sum by ({', '.join(('le', *filter(None, [by])))}) (rate({metric}_bucket{selector}[{RATE}])))"


def messaging(service: str) -> list[Panel]:
    """What every service has: message RED from FastStream's middleware, its outbox backlog."""
    app = f'app_name="{service}"'
    return [
        Panel("Messages handled per second", (
            q(f"sum by (handler, status) (rate(faststream_received_processed_messages_total{{{app}}}[{RATE}]))",
              "{{handler}} {{status}}"),), unit="reqps"),
        Panel("Message handling time p95", (
            q(p95("faststream_received_processed_messages_duration_seconds", "handler", f"{{{app}}}"),
              "{{handler}}"),), unit="s"),
        Panel("Messages published per second", (
            q(f"sum by (destination) (rate(faststream_published_messages_total{{{app}}}[{RATE}]))",
              "{{destination}}"),), unit="reqps"),
        Panel("Outbox backlog", (
            q(f'max(agentloop_outbox_pending_messages{{service="{service}"}})', "rows waiting"),
            q(f'max(agentloop_outbox_oldest_pending_age_seconds{{service="{service}"}})', "oldest (s)")),
            description="rows staged with a state change and not yet published; the relay retries them"),
    ]


DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "agentloop-gateway": ("Agent Loop / gateway", [
        Panel("Requests per second by route", (
            q(f"sum by (route) (rate(gateway_http_requests_total[{RATE}]))", "{{route}}"),), unit="reqps"),
        Panel("Error ratio by route (5xx)", (
            q(f'(sum by (route) (rate(gateway_http_requests_total{{status=~"5.."}}[{RATE}])) '
              f"or sum by (route) (rate(gateway_http_requests_total[{RATE}])) * 0) "
              f"/ sum by (route) (rate(gateway_http_requests_total[{RATE}]))", "{{route}}"),), unit="percentunit",
            description="0 for a route that answered no 5xx in the window (not 'no data')"),
        Panel("Latency p95 by route", (q(p95("gateway_http_request_duration_seconds", "route"), "{{route}}"),),
              unit="s"),
        Panel("Refused requests (4xx) by route and status", (
            q(f'sum by (route, status) (rate(gateway_http_requests_total{{status=~"4.."}}[{RATE}]))',
              "{{route}} {{status}}"),), unit="reqps"),
        Panel("Auth failures by reason", (
            q(f"sum by (reason) (rate(gateway_auth_failures_total[{RATE}]))", "{{reason}}"),), unit="reqps"),
        Panel("Rate-limit refusals", (
            q(f"sum by (limit) (rate(gateway_rate_limited_total[{RATE}]))", "{{limit}}"),), unit="reqps"),
        Panel("Screening verdicts on user and system input", (
            q(f"sum by (source, action, category) (rate(gateway_screened_messages_total[{RATE}]))",
              "{{source}} {{action}} {{category}}"),), unit="reqps"),
        Panel("Runs submitted by mode", (
            q(f"sum by (mode) (rate(gateway_runs_submitted_total[{RATE}]))", "{{mode}}"),), unit="reqps"),
        Panel("Run time p95 (submit to outcome)", (q(p95("gateway_run_duration_seconds", "status"), "{{status}}"),),
              unit="s"),
        Panel("Open WebSockets", (q("sum(gateway_websockets_active)", "streams"),), kind="stat"),
        *messaging("gateway"),
    ]),
    "agentloop-agent-runner": ("Agent Loop / agent-runner", [
        Panel("Runs by outcome", (
            q(f"sum by (outcome) (rate(agent_runner_runs_total[{RATE}]))", "{{outcome}}"),), unit="reqps"),
        Panel("Failure taxonomy per model version", (
            q(f'sum by (model_version, label) (rate(log_miner_runs_classified_total{{label!~"valid_call|direct_answer"}}[{RATE}]))',
              "{{model_version}} {{label}}"),), unit="reqps",
            description="the log-miner's labels of the runs each version served"),
        Panel("Serving version per instance", (
            q("max by (instance, model_version) (agent_runner_serving_model_info) == 1", "{{instance}} {{model_version}}"),),
            kind="stat"),
        Panel("Tokens generated per second", (
            q(f"sum by (engine) (rate(agent_runner_tokens_generated_total[{RATE}]))", "{{engine}}"),), unit="short"),
        Panel("Generation speed of a model turn p95", (
            q(p95("agent_runner_generation_tokens_per_second", "engine"), "{{engine}}"),), unit="short"),
        Panel("Time to first token p95", (
            q(p95("agent_runner_time_to_first_token_seconds", "engine"), "{{engine}}"),), unit="s",
            description="from a model turn's start to its first generated text"),
        Panel("Model turn time p95", (q(p95("agent_runner_engine_seconds", "engine"), "{{engine}}"),), unit="s"),
        Panel("Run time p95 by outcome", (q(p95("agent_runner_run_duration_seconds", "outcome"), "{{outcome}}"),),
              unit="s"),
        Panel("Tool calls by tool and outcome", (
            q(f"sum by (tool, outcome) (rate(agent_runner_tool_calls_total[{RATE}]))", "{{tool}} {{outcome}}"),),
            unit="reqps"),
        Panel("Invalid tool calls by reason", (
            q(f"sum by (reason) (rate(agent_runner_invalid_tool_calls_total[{RATE}]))", "{{reason}}"),), unit="reqps"),
        Panel("Screened tool results", (
            q(f"sum by (tool, action) (rate(agent_runner_screened_tool_results_total[{RATE}]))", "{{tool}} {{action}}"),),
            unit="reqps"),
        Panel("Model reloads", (
            q(f"sum by (outcome) (increase(agent_runner_model_reload_seconds_count[{RATE}]))", "{{outcome}}"),
            q(f"sum(increase(agent_runner_model_reload_failures_total[{RATE}]))", "failed")), unit="short"),
        Panel("Canary-routed runs", (
            q(f"sum by (route) (increase(agent_runner_canary_runs_total[{RATE}]))", "{{route}}"),), unit="short"),
        *messaging("agent-runner"),
    ]),
    "agentloop-log-miner": ("Agent Loop / log-miner", [
        Panel("Runs taken in per second", (
            q(f'sum(rate(log_miner_messages_received_total{{type=~"AgentRunFinished|InteractionLogged"}}[{RATE}]))',
              "runs"),), unit="reqps"),
        Panel("Taxonomy per model version", (
            q(f"sum by (model_version, label) (rate(log_miner_runs_classified_total[{RATE}]))",
              "{{model_version}} {{label}}"),), unit="reqps"),
        Panel("Failure ratio in the retrain policy's window", (q("max(log_miner_window_failure_ratio)", "failures"),),
              unit="percentunit"),
        Panel("Examples built by kind", (
            q(f"sum by (kind) (increase(log_miner_examples_built_total[{RATE}]))", "{{kind}}"),), unit="short"),
        Panel("Examples dropped by reason", (
            q(f"sum by (reason) (increase(log_miner_examples_dropped_total[{RATE}]))", "{{reason}}"),), unit="short"),
        Panel("Datasets built", (
            q("sum by (trigger) (log_miner_datasets_built_total)", "{{trigger}}"),), kind="stat"),
        Panel("Dataset build time p95", (
            q(p95("log_miner_dataset_build_duration_seconds"),
              "p95"),), unit="s"),
        Panel("Canary: live runs per arm", (q("max by (arm) (log_miner_canary_runs)", "{{arm}}"),), unit="short"),
        Panel("Canary: valid-call and failure ratio per arm", (
            q("max by (arm) (log_miner_canary_valid_call_ratio)", "valid calls {{arm}}"),
            q("max by (arm) (log_miner_canary_failure_ratio)", "failures {{arm}}")), unit="percentunit"),
        Panel("Canary: judge", (
            q("max(log_miner_canary_regressing)", "regressing"),
            q("sum by (verdict) (log_miner_canary_verdicts_total)", "{{verdict}}")), kind="stat"),
        *messaging("log-miner"),
    ]),
    "agentloop-trainer": ("Agent Loop / trainer", [
        Panel("Loss", (q("trainer_loss", "{{job_id}}"),)),
        Panel("Learning rate", (q("trainer_learning_rate", "{{job_id}}"),)),
        Panel("Training tokens per second", (q("trainer_tokens_per_second", "{{job_id}}"),)),
        Panel("Progress (steps)", (q("trainer_step", "{{job_id}} step"), q("trainer_total_steps", "{{job_id}} of"))),
        Panel("ETA", (q("trainer_eta_seconds", "{{job_id}}"),), unit="s"),
        Panel("Jobs by status", (q("max by (status) (trainer_jobs)", "{{status}}"),)),
        Panel("Attempts by outcome", (q("sum by (outcome) (trainer_training_attempts_total)", "{{outcome}}"),),
              kind="stat"),
        *messaging("trainer"),
    ]),
    "agentloop-evaluator": ("Agent Loop / evaluator", [
        Panel("Suite score per version and quant", (
            q("max by (model_version, quantization, suite) (evaluator_suite_score)",
              "{{model_version}} {{quantization}} {{suite}}"),), unit="percentunit"),
        Panel("Gate verdicts", (q("sum by (outcome) (evaluator_gate_outcomes_total)", "{{outcome}}"),), kind="stat"),
        Panel("Category regressions (gate refusals)", (
            q("sum by (suite, category) (evaluator_category_regressions_total)", "{{suite}} {{category}}"),),
            kind="stat"),
        Panel("Evaluations by status", (q("max by (status) (evaluator_evaluations)", "{{status}}"),)),
        Panel("Evaluation time p95", (
            q(p95("evaluator_evaluation_duration_seconds"),
              "p95"),), unit="s"),
        Panel("Items answered", (q(f"sum by (role) (rate(evaluator_items_answered_total[{RATE}]))", "{{role}}"),),
              unit="reqps"),
        *messaging("evaluator"),
    ]),
    "agentloop-exporter": ("Agent Loop / exporter", [
        Panel("Export stage time p95", (q(p95("exporter_export_stage_duration_seconds", "stage"), "{{stage}}"),),
              unit="s"),
        Panel("Export time p95", (
            q(p95("exporter_export_duration_seconds"), "p95"),),
            unit="s"),
        Panel("GGUF size by quantization (last export)", (
            q("max by (quantization) (exporter_gguf_size_bytes)", "{{quantization}}"),), unit="bytes", kind="stat"),
        Panel("Exports by outcome", (q("sum by (outcome) (exporter_exports_total)", "{{outcome}}"),), kind="stat"),
        Panel("Export jobs by status", (q("max by (status) (exporter_export_jobs)", "{{status}}"),)),
        Panel("Deployments by cause and outcome", (
            q("sum by (cause, outcome) (exporter_deployments_total)", "{{cause}} {{outcome}}"),), kind="stat"),
        Panel("Canaries", (q("sum by (event) (exporter_canaries_total)", "{{event}}"),), kind="stat"),
        Panel("Production version", (q("max by (version) (exporter_production_model_info) == 1", "{{version}}"),),
              kind="stat"),
        *messaging("exporter"),
    ]),
    "agentloop-loop": ("Agent Loop / the loop", [
        Panel("Services up", (q('sum by (job) (up{job=~"gateway|agent-runner|log-miner|trainer|evaluator|exporter"})',
                                "{{job}}"),), kind="stat"),
        Panel("Runs per second", (q(f"sum(rate(agent_runner_runs_total[{RATE}]))", "runs"),), unit="reqps"),
        Panel("Failure share of classified runs", (
            q(f'sum(rate(log_miner_runs_classified_total{{label!~"valid_call|direct_answer"}}[{RATE}])) '
              f"/ sum(rate(log_miner_runs_classified_total[{RATE}]))", "failures"),), unit="percentunit"),
        Panel("Datasets, trainings, gate verdicts, deployments", (
            q("sum(log_miner_datasets_built_total)", "datasets"),
            q('sum(trainer_training_attempts_total{outcome="completed"})', "trainings"),
            q("sum by (outcome) (evaluator_gate_outcomes_total)", "gate {{outcome}}"),
            q('sum(exporter_deployments_total{outcome="deployed"})', "deployments")), kind="stat"),
        Panel("Serving version per runner", (
            q("max by (instance, model_version) (agent_runner_serving_model_info) == 1", "{{instance}} {{model_version}}"),),
            kind="stat"),
        Panel("Outbox backlog per service", (
            q("max by (service) (agentloop_outbox_pending_messages)", "{{service}}"),)),
        Panel("Queue depth (dead-letter queues included)", (
            q("sum by (queue) (rabbitmq_detailed_queue_messages)", "{{queue}}"),),
            description="from RabbitMQ's detailed metrics (the rabbitmq-queues scrape job)"),
    ]),
}


def build(uid: str, title: str, panels: list[Panel]) -> dict:
    board = (dashboard.Dashboard(title).uid(uid).tags(["agentloop"]).refresh("30s").time("now-6h", "now")
             .timezone("utc").editable())
    for i, panel in enumerate(panels):
        if panel.kind == "timeseries":
            builder = timeseries.Panel().legend(
                common.VizLegendOptions().display_mode(kinds.LegendDisplayMode.LIST)
                .placement(kinds.LegendPlacement.BOTTOM).show_legend(True)
            ).tooltip(common.VizTooltipOptions().mode(kinds.TooltipDisplayMode.MULTI).sort(kinds.SortOrder.DESCENDING))
        else:  # the last value of each series
            builder = stat.Panel().graph_mode(kinds.BigValueGraphMode.NONE).reduce_options(
                common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        builder = builder.title(panel.title).datasource(DATASOURCE).unit(panel.unit).height(8).span(12)
        if panel.description:
            builder = builder.description(panel.description)
        for ref, query in zip("ABCDEFGH", panel.queries, strict=False):
            builder = builder.with_target(prometheus.Dataquery().expr(query.expr).legend_format(query.legend)
                                          .ref_id(ref).datasource(DATASOURCE))
        board = board.with_panel(builder.grid_pos(GridPos(h=8, w=12, x=12 * (i % 2), y=8 * (i // 2))))
    return json.loads(json.dumps(board.build(), cls=JSONEncoder))


def rendered() -> dict[str, str]:
    return {f"{uid}.json": json.dumps(build(uid, title, panels), indent=2, sort_keys=True) + "\n"
            for uid, (title, panels) in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON differs")
    args = parser.parse_args(argv)
    stale = []
    for name, text in rendered().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale dashboards (run deploy/grafana/generate.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
