"""Use cases of the exporter: queue exports, run one under a lease, move aliases, run canaries."""

from .accept import AcceptExport
from .canaries import RunCanaries
from .deploy import DeployModels
from .run_export import ExportPolicy, RunExportJob

__all__ = ["AcceptExport", "DeployModels", "RunCanaries", "ExportPolicy", "RunExportJob"]
