"""Message contracts shared by every Agent Loop service. Data only, no I/O."""

from .agent import (
    AgentRunCompleted,
    AgentRunFailed,
    AgentRunFinished,
    AgentRunRequested,
    AgentRunStep,
    ChatMessage,
    Decoding,
    FeedbackSubmitted,
    FunctionSpec,
    GroupThinkOptions,
    InteractionLogged,
    NamedFunction,
    NamedToolChoice,
    Principal,
    RunOptions,
    AnswerFormat,
    RunOutcome,
    ToolCall,
    ToolChoice,
    ToolSpec,
    TrajectoryStep,
    Usage,
    tool_choice_name,
)
from .envelope import Contract, Envelope, deterministic_id, new_id, utcnow
from .learning import (
    DatasetBuilt,
    DatasetOptions,
    EvaluationCompleted,
    ExportCompleted,
    ExportedFile,
    ExportFailed,
    LoraOptions,
    ModelDeployed,
    ModelPromoted,
    ModelPromoteRequested,
    ModelRollbackRequested,
    RetrainRequested,
    SuiteScore,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
)
from .topology import (
    ALL_CONTRACTS,
    BY_TYPE,
    DEAD_LETTER_EXCHANGE,
    EVENTS_EXCHANGE,
    REPLY_QUEUE_PREFIX,
    SERVICES,
    dead_letter_queue_name,
    queue_name,
)

__all__ = [name for name in dir() if not name.startswith("_")]
