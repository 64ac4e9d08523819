"""Use cases of the exporter: queue exports, run one under a lease, move aliases."""

from .accept import AcceptExport
from .deploy import DeployModels
from .run_export import ExportPolicy, RunExportJob

__all__ = ["AcceptExport", "DeployModels", "ExportPolicy", "RunExportJob"]
