"""Learning-loop messages: datasets, training, evaluation, promotion, export, deployment."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .envelope import Contract

# What a dataset example is, by the shape of its answer (the log-miner's `domain.shapes` decides).
ExampleShape = Literal["no_call", "parallel", "multi_turn", "single_call", "text"]
# DatasetOptions.shape_weights keys: a shape, or `corrected` (a multiplier for feedback corrections).
ShapeWeightKey = Literal["no_call", "parallel", "multi_turn", "single_call", "text", "corrected"]


class DatasetOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sources: list[str] = Field(default_factory=lambda: ["mined"], description="mined or corpus URIs")
    weights: dict[str, float] = Field(default_factory=dict)
    since: str | None = Field(default=None, description="ISO time; only runs after it")
    val_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    max_examples: int | None = Field(default=None, ge=1)
    shape_weights: dict[ShapeWeightKey, Annotated[float, Field(ge=0.0, le=100.0)]] = Field(
        default_factory=dict,
        description="copies per train example by its shape (no_call: text where tools were offered; parallel: 2+ "
                    "calls in one turn; multi_turn: 2+ model turns; single_call; text: no tools offered), times "
                    "`corrected` for feedback corrections; merged over the log-miner's defaults; the validation "
                    "split is never weighted",
    )


class LabelCandidate(BaseModel):
    """A logged run that nobody has rated or corrected yet, as the label queue lists it."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    reason: Literal["low_confidence", "failed"] = Field(
        description="low_confidence: the run's GroupThink samples disagreed; failed: its taxonomy label is a failure")
    confidence: float | None = Field(default=None, description="the lowest agreement of the run's model turns")
    label: str = Field(description="primary taxonomy label")
    labels: list[str] = Field(default_factory=list)
    outcome: str
    model_version: str
    instruction: str = Field(default="", description="the last user message, shortened")
    tools: list[str] = Field(default_factory=list, description="names of the tools offered")
    calls: list[dict[str, Any]] = Field(default_factory=list, description="the calls the model wrote: name, arguments")
    answer: str | None = None
    subject: str | None = None
    logged_at: datetime | None = None


class LabelQueue(BaseModel):
    """Runs that most need a human label, most needed first (the log-miner's `GET /v1/label-queue`,
    proxied by the gateway's `GET /v1/ops/label-queue`)."""

    model_config = ConfigDict(extra="ignore")
    MAX_LIMIT: ClassVar[int] = 500  # most runs one request lists

    waiting: int = Field(description="runs in the queue in all (the list is its head)")
    runs: list[LabelCandidate] = Field(default_factory=list)


class LoraOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    rank: int = Field(default=16, ge=1, le=512)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    learning_rate: float = Field(default=2e-4, gt=0)
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(default=5, ge=0)
    gradient_accumulation: int = Field(default=1, ge=1)
    batch_size: int = Field(default=4, ge=1)
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    max_seq_len: int = Field(default=1024, ge=64)
    decision_weight: float = Field(
        default=1.0, ge=1.0, le=100.0,
        description="loss weight of the token after each `</tool_call` in a model turn, where the model decides "
                    "between another call and the end of its turn (parallel calls); 1: every label alike",
    )
    seed: int = 0
    checkpoint_every: int = Field(default=20, ge=1)
    quantization: Literal["none", "4bit"] = "none"
    max_grad_norm: float | None = Field(default=1.0, gt=0, description="clip gradients to this norm; null: no clipping")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto", description="auto: bf16 compute where the device supports it (CUDA, CPUs with AVX512-BF16/AMX)"
    )


class RetrainRequested(Contract):
    """An operator (or a policy) asks for a new dataset and a training run."""

    routing_key: ClassVar[str] = "retrain.requested.v1"

    request_id: str
    requested_by: str
    reason: str = ""
    dataset: DatasetOptions = Field(default_factory=DatasetOptions)
    training: LoraOptions = Field(default_factory=LoraOptions)
    base_model: str | None = Field(default=None, description="registry version or URI; default: production")


MAX_DATASET_VERSION = 2**31 - 1  # log_miner.datasets.version is a Postgres integer


class DatasetBuilt(Contract):
    routing_key: ClassVar[str] = "dataset.built.v1"
    # A notification: the trainer acts on the TrainingRequested that follows it.
    requires_subscriber: ClassVar[bool] = False

    dataset_id: str
    version: int
    train_uri: str
    val_uri: str
    manifest_uri: str
    counts: dict[str, int] = Field(default_factory=dict)
    source_run_ids: list[str] = Field(default_factory=list)


class TrainingRequested(Contract):
    routing_key: ClassVar[str] = "training.requested.v1"

    job_id: str
    dataset_id: str
    train_uri: str
    val_uri: str | None = None
    base_model: str
    options: LoraOptions = Field(default_factory=LoraOptions)
    requested_by: str = "policy"


class TrainingProgress(Contract):
    routing_key: ClassVar[str] = "training.progress.v1"
    # A notification (decision 0010): dashboards and clients may listen, nothing must.
    requires_subscriber: ClassVar[bool] = False

    job_id: str
    step: int
    total_steps: int
    loss: float | None = None
    learning_rate: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None


class TrainingCompleted(Contract):
    routing_key: ClassVar[str] = "training.completed.v1"

    job_id: str
    dataset_id: str
    base_model: str
    adapter_uri: str
    metrics: dict[str, float] = Field(default_factory=dict)
    steps: int = 0


class TrainingFailed(Contract):
    routing_key: ClassVar[str] = "training.failed.v1"
    # A notification (decision 0010): no service consumes it yet, and a refused outbox row would
    # hold back the trainer's TrainingCompleted events behind it.
    requires_subscriber: ClassVar[bool] = False

    job_id: str
    reason: str


class SuiteScore(BaseModel):
    model_config = ConfigDict(extra="ignore")

    suite: str
    score: float
    per_category: dict[str, float] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)


class EvaluationCompleted(Contract):
    """The gate's verdict on one exported candidate (decision 0011): always published."""

    routing_key: ClassVar[str] = "evaluation.completed.v1"
    requires_subscriber: ClassVar[bool] = False  # a notification: the verdict acts via model.promoted

    evaluation_id: str
    job_id: str
    candidate: str = Field(description="the candidate's model version")
    baseline: str | None = Field(default=None, description="the production version it was compared with")
    quantization: str | None = Field(default=None, description="the quant that passed (smallest first); None if none did")
    candidate_scores: list[SuiteScore] = Field(default_factory=list)
    baseline_scores: list[SuiteScore] = Field(default_factory=list)
    primary_suite: str | None = Field(default=None, description="the gate policy's primary suite (its score in "
                                      "candidate_scores is the version's one number); None when the gate never "
                                      "ran (an evaluation given up)")
    passed: bool
    reasons: list[str] = Field(default_factory=list)
    report_uri: str | None = None


class ModelPromoted(Contract):
    """The gate passed: the registry owner (exporter) moves `production` to this version."""

    routing_key: ClassVar[str] = "model.promoted.v1"

    model_version: str
    job_id: str
    evaluation_id: str
    adapter_uri: str
    base_model: str
    quantization: str = "Q4_K_M"
    gguf_uri: str | None = None
    sha256: str | None = None


class ModelPromoteRequested(Contract):
    """An operator asks to make a registered version `production` (gateway → exporter)."""

    routing_key: ClassVar[str] = "model.promote.requested.v1"

    request_id: str
    model_version: str
    requested_by: str
    quantization: str | None = Field(default=None, description="default: the version's evaluated quant")
    reason: str = ""


class ModelRollbackRequested(Contract):
    """An operator asks to move `production` back to `previous` (gateway → exporter)."""

    routing_key: ClassVar[str] = "model.rollback.requested.v1"

    request_id: str
    requested_by: str
    reason: str = ""


CanaryMode = Literal["canary", "ab"]


class CanaryStartRequested(Contract):
    """An operator routes a share of live runs to a version (gateway → exporter, the registry's
    writer, which records the canary; runners read it from the registry; decision 0020)."""

    routing_key: ClassVar[str] = "canary.start.requested.v1"

    request_id: str = Field(description="becomes the canary's id")
    model_version: str
    share_pct: float = Field(gt=0, le=100, description="per cent of live runs (by hash of the run id)")
    mode: CanaryMode = Field(default="canary", description="canary: the judge promotes or rolls back; ab: report only")
    min_samples: int = Field(default=30, ge=1, le=1_000_000, description="finished runs per arm before a verdict")
    max_duration_s: int = Field(default=3600, ge=10, le=30 * 86400, description="the judge's time limit")
    requested_by: str
    reason: str = ""


class CanaryStopRequested(Contract):
    """An operator ends the running canary with no promotion (gateway → exporter)."""

    routing_key: ClassVar[str] = "canary.stop.requested.v1"

    request_id: str
    canary_id: str
    requested_by: str
    reason: str = ""


class CanaryJudged(Contract):
    """The canary judge's verdict on live outcomes (log-miner → exporter, which promotes the
    version or ends the canary; decision 0020)."""

    routing_key: ClassVar[str] = "canary.judged.v1"

    canary_id: str
    model_version: str
    production_version: str
    verdict: Literal["promote", "rollback"]
    reason: str
    report: dict[str, Any] = Field(default_factory=dict, description="the judge's tallies and tests per arm")


class CanaryEnded(Contract):
    """Notification: a canary ended (promoted, rolled back or stopped), from the exporter."""

    routing_key: ClassVar[str] = "canary.ended.v1"
    requires_subscriber: ClassVar[bool] = False

    canary_id: str
    model_version: str
    status: Literal["promoted", "rolled_back", "stopped"]
    ended_by: str
    reason: str


class ExportedFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    uri: str
    sha256: str
    size_bytes: int
    kind: Literal["gguf", "modelfile", "report"]
    quantization: str | None = None


class ExportCompleted(Contract):
    """A trained adapter became a registered `candidate` version with its GGUF quant ladder."""

    routing_key: ClassVar[str] = "export.completed.v1"

    model_version: str
    files: list[ExportedFile]
    duration_s: float = 0.0
    ollama_model: str | None = None
    job_id: str | None = None
    dataset_id: str | None = None
    base_model: str | None = None
    adapter_uri: str | None = None
    parity: dict[str, Any] = Field(default_factory=dict, description="F16 GGUF vs merged model check")
    stage_seconds: dict[str, float] = Field(default_factory=dict, description="merge, gguf, quantize, parity, upload")


class ExportFailed(Contract):
    """Export of a trained adapter failed (parity mismatch, bad adapter, ...): nothing registered."""

    routing_key: ClassVar[str] = "export.failed.v1"
    requires_subscriber: ClassVar[bool] = False

    job_id: str
    reason: str


class ModelDeployed(Contract):
    """Tells runners to serve a model version (also used for rollback)."""

    routing_key: ClassVar[str] = "model.deployed.v1"
    requires_subscriber: ClassVar[bool] = False  # runners bind per-instance queues; zero runners is legal

    model_version: str
    gguf_uri: str
    sha256: str
    alias: Literal["production", "candidate"] = "production"
    previous_version: str | None = None
    cause: Literal["promoted", "operator", "rollback", "canary"] = "promoted"
    ollama_model: str | None = Field(
        default=None, description="the Ollama model the exporter pushed this version as (None: not pushed)"
    )
