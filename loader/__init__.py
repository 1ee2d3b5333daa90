"""flowkit-loader: a declarative loader for FlowKit-UI deployments.

The public Python API (the CLI mirrors it):

    report = loader.validate("deploy.yaml")          # every problem, nothing sent
    manifest = loader.load_manifest("deploy.yaml")   # the model, or ManifestError
    plan = loader.plan("deploy.yaml")                # what would change (nothing written)
    loader.save_plan(plan, "plan.json")              # for a later loader.apply("plan.json")
    applied = loader.apply("deploy.yaml", allow_destroy=False)   # plan + apply
    loader.import_state("deploy.yaml")               # take over what the notebook loaded
    loader.status("deploy.yaml")                     # what is loaded, gaps, grants

Names are imported on first use, so that importing one layer (say `loader.model`) does
not pull in the libraries of the others. No module of the package is named like one of
these functions: importing it would bind the module over the function's name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loader.applying import apply as apply
    from loader.applying import import_state as import_state
    from loader.inventory import status as status
    from loader.model import LoaderError as LoaderError
    from loader.model import ManifestError as ManifestError
    from loader.planfile import save_plan as save_plan
    from loader.run import plan as plan
    from loader.validation import ValidationReport as ValidationReport
    from loader.validation import load_manifest as load_manifest
    from loader.validation import validate as validate

_EXPORTS = {
    "LoaderError": "loader.model",
    "ManifestError": "loader.model",
    "ValidationReport": "loader.validation",
    "load_manifest": "loader.validation",
    "validate": "loader.validation",
    "plan": "loader.run",
    "save_plan": "loader.planfile",
    "apply": "loader.applying",
    "import_state": "loader.applying",
    "status": "loader.inventory",
}
__all__ = [
    "LoaderError",
    "ManifestError",
    "ValidationReport",
    "apply",
    "import_state",
    "load_manifest",
    "plan",
    "save_plan",
    "status",
    "validate",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'loader' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
