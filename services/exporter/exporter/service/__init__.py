"""Use cases of the exporter: queue exports, run one under a lease, move aliases."""

from .accept import AcceptExport
from .deploy import DeployModels
from .lineage import LineageReader
from .run_export import ExportPolicy, RunExportJob
from .scheduler import export_scheduler

__all__ = ["AcceptExport", "DeployModels", "ExportPolicy", "export_scheduler", "LineageReader", "RunExportJob"]
