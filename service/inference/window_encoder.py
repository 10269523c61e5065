"""The seam every runtime implements: padded token windows in, unit vectors out."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt


class WindowEncoder(Protocol):
    """Token ids + mask [B, T] → vectors [B, D]; called from one thread at a time."""

    def encode(
        self, input_ids: npt.NDArray[np.int64], attention_mask: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]: ...

    @property
    def active_providers(self) -> list[str]:
        """What runs the graph, e.g. CPUExecutionProvider or OpenVINO-CPU-bf16."""
        ...
