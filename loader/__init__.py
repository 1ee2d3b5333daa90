"""flowkit-loader: a declarative loader for FlowKit-UI deployments.

The public Python API (the CLI mirrors it):

    report = loader.validate("deploy.yaml")          # every problem, nothing sent
    manifest = loader.load_manifest("deploy.yaml")   # the model, or ManifestError
"""

from loader.model import LoaderError, ManifestError
from loader.validate import ValidationReport, load_manifest, validate

__all__ = ["LoaderError", "ManifestError", "ValidationReport", "load_manifest", "validate"]
