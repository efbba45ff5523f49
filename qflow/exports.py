"""Results as JSON and pandas DataFrames, with the inputs that reproduce them.

Example:
    >>> import numpy as np
    >>> jsonable({"params": np.array([0.5, 1.0]), "energy": np.float64(-1.1)})
    {'params': [0.5, 1.0], 'energy': -1.1}
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qflow.exceptions import QflowConfigError

__all__ = ["dataframe", "jsonable", "write_json"]


def jsonable(value: Any) -> Any:
    """``value`` with arrays, numpy scalars, tuples, dataclasses and paths made JSON-ready;
    NaN and infinities become None (JSON has no such numbers)."""
    import numpy as np

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_dict"):
            return jsonable(value.to_dict())
        return jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | int | bool | type(None)):
        return value
    if isinstance(value, complex):
        return {"real": value.real, "imag": value.imag}
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def write_json(data: Any, path: str | Path | None = None) -> str:
    """``data`` as indented JSON text, also written to ``path`` if given."""
    text = json.dumps(jsonable(data), indent=2)
    if path is not None:
        Path(path).write_text(text + "\n")
    return text


def dataframe(columns: Mapping[str, list[Any]], attrs: Mapping[str, Any]) -> Any:
    """A pandas DataFrame of ``columns`` with ``attrs`` (the run's summary and inputs)."""
    try:
        import pandas as pd
    except ImportError as exc:
        raise QflowConfigError(
            "DataFrames need pandas: pip install 'qflow-runtime[pandas]' "
            "(or pip install pandas). to_dict() and to_json() need "
            "nothing more."
        ) from exc
    frame = pd.DataFrame(dict(columns))
    frame.attrs.update(jsonable(dict(attrs)))
    return frame
