"""The agent-runner's domain metrics (`agent_runner_` prefix), on the service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class RunnerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.run_duration = Histogram(
            "agent_runner_run_duration_seconds", "Wall time of a run, by outcome", ["outcome"],
            buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.runs = Counter("agent_runner_runs_total", "Finished runs by outcome", ["outcome"], registry=registry)
        self.engine_time = Histogram(
            "agent_runner_engine_seconds", "Time the engine spent on one model turn", ["engine"],
            buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.first_token = Histogram(
            "agent_runner_time_to_first_token_seconds",
            "From a model turn's start to its first generated text (a GroupThink turn: to the vote, when the "
            "first text can be shown)", ["engine"], buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.tokens = Counter(
            "agent_runner_tokens_generated_total", "Completion tokens generated", ["engine"], registry=registry
        )
        self.prompt_tokens = Counter(
            "agent_runner_prompt_tokens_total", "Prompt tokens sent to the engine", ["engine"], registry=registry
        )
        self.tokens_per_second = Histogram(
            "agent_runner_generation_tokens_per_second", "Generation speed of one model turn", ["engine"],
            buckets=(1, 5, 10, 20, 50, 100, 200, 500, 1000, 5000), registry=registry,
        )
        self.tool_calls = Counter(
            "agent_runner_tool_calls_total", "Tool calls by tool and outcome (ok, error, invalid, client)",
            ["tool", "outcome"], registry=registry,
        )
        self.invalid_tool_calls = Counter(
            "agent_runner_invalid_tool_calls_total", "Tool calls rejected before running, by reason",
            ["reason"], registry=registry,
        )
        self.groupthink_agreement = Histogram(
            "agent_runner_groupthink_agreement_ratio",
            "GroupThink model turns: share of the samples that gave the winning answer, by engine",
            ["engine"], buckets=(0.2, 0.34, 0.4, 0.5, 0.6, 0.67, 0.75, 0.8, 0.9, 1.0), registry=registry,
        )
        self.constrained_turns = Counter(
            "agent_runner_constrained_turns_total", "Model turns decoded under the offered tools' grammar",
            ["engine"], registry=registry,
        )
        self.grammar_fallbacks = Counter(
            "agent_runner_grammar_fallbacks_total",
            "Tools left free (any JSON arguments) in constrained turns: their schema uses a construct the grammar "
            "converter cannot express", ["engine"], registry=registry,
        )
        self.serving_model = Gauge(
            "agent_runner_serving_model_info", "The model version and engine serving runs (1 = serving)",
            ["model_version", "engine"], registry=registry,
        )

        self.desired_model = Gauge(
            "agent_runner_desired_model_info", "The model version this runner was last asked to serve",
            ["model_version"], registry=registry,
        )
        self.reload_duration = Histogram(
            "agent_runner_model_reload_seconds",
            "Time to fetch, verify, load and warm a deployed model, by outcome (ok, failed, superseded)",
            ["outcome"], buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900), registry=registry,
        )
        self.reload_failures = Counter(
            "agent_runner_model_reload_failures_total", "Deployed models that failed to load (the old one kept serving)",
            registry=registry,
        )
        self.last_reload = Gauge(
            "agent_runner_model_last_reload_timestamp_seconds", "When the serving model was last swapped in",
            registry=registry,
        )

        self.screened_tool_results = Counter(
            "agent_runner_screened_tool_results", "Tool results the prompt-injection screen fired on, by action",
            ["tool", "action", "category"], registry=registry,
        )
        self.extra_models = Gauge(
            "agent_runner_extra_models", "Model versions loaded beside production for the runs that ask for them",
            registry=registry,
        )
        self.extra_model_loads = Histogram(
            "agent_runner_extra_model_load_seconds",
            "Time to fetch, verify and load a version a run asked for, by outcome (ok, failed, refused)",
            ["outcome"], buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900), registry=registry,
        )

        self.canary_runs = Counter(
            "agent_runner_canary_runs",  # exposed as agent_runner_canary_runs_total
            "Runs the running canary's hash routed, by where they ran: candidate, or production when this runner "
            "refused the canary (refused)", ["route"], registry=registry,
        )
        for route in ("candidate", "refused"):
            self.canary_runs.labels(route=route)

    def tool_screened(self, tool: str, record: dict) -> None:
        self.screened_tool_results.labels(tool=tool, action=record["action"], category=record["category"]).inc()

    def extra_model_loaded(self, outcome: str, seconds: float, loaded: int) -> None:
        self.extra_model_loads.labels(outcome=outcome).observe(seconds)
        self.extra_models.set(loaded)

    def wanted(self, model_version: str) -> None:
        self.desired_model.clear()
        self.desired_model.labels(model_version=model_version).set(1)

    def reload_finished(self, outcome: str, seconds: float) -> None:
        self.reload_duration.labels(outcome=outcome).observe(seconds)
        if outcome == "failed":
            self.reload_failures.inc()
        elif outcome == "ok":
            self.last_reload.set_to_current_time()

    def serving(self, model_version: str, engine: str) -> None:
        self.serving_model.clear()
        self.serving_model.labels(model_version=model_version, engine=engine).set(1)

    def model_turn(self, engine: str, seconds: float, prompt_tokens: int, completion_tokens: int,
                   first_token_s: float | None) -> None:
        self.engine_time.labels(engine=engine).observe(seconds)
        if first_token_s is not None:
            self.first_token.labels(engine=engine).observe(first_token_s)
        self.tokens.labels(engine=engine).inc(completion_tokens)
        self.prompt_tokens.labels(engine=engine).inc(prompt_tokens)
        if seconds > 0 and completion_tokens > 0:
            self.tokens_per_second.labels(engine=engine).observe(completion_tokens / seconds)

    def groupthink_turn(self, engine: str, agreement: float) -> None:
        self.groupthink_agreement.labels(engine=engine).observe(agreement)

    def decoded(self, engine: str, constrained: bool, unconstrained_tools: int) -> None:
        if constrained:
            self.constrained_turns.labels(engine=engine).inc()
            if unconstrained_tools:
                self.grammar_fallbacks.labels(engine=engine).inc(unconstrained_tools)

    def run_finished(self, outcome: str, seconds: float) -> None:
        self.runs.labels(outcome=outcome).inc()
        self.run_duration.labels(outcome=outcome).observe(seconds)
