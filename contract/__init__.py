"""The data contract of PRODUCT.md: table schemas, loading, validation and quarantine.

All stages load data through :func:`load`. Heavy modules (pandas, pyarrow) are imported on
first use so that importing this package (the CLI does) stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contract.validate import Validated

__all__ = ["Validated", "load"]


def load(data_dir: Path) -> Validated:
    """Read and validate a data directory: clean typed tables, quarantine and counts."""
    # Imported on use: the readers and validator (pandas, pyarrow) add 0.75 s to `botfilter --help`.
    from contract.readers import read_data_dir
    from contract.validate import validate_raw

    return validate_raw(read_data_dir(Path(data_dir)))


def __getattr__(name: str) -> Any:
    if name == "Validated":
        # Imported on use: contract.validate (pandas, pyarrow) adds 0.5 s to `botfilter --help`.
        from contract.validate import Validated

        return Validated
    raise AttributeError(f"module 'contract' has no attribute {name!r}")
