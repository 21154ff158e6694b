"""Classification heads: a linear layer, or a small MLP."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LinearOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    dropout: float = Field(0.0, ge=0, lt=1)


class MLPOptions(LinearOptions):
    hidden: int = Field(256, ge=1)


def linear(in_features: int, num_outputs: int, dropout: float = 0.0) -> Any:
    from torch import nn

    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_outputs))


def mlp(in_features: int, num_outputs: int, hidden: int = 256, dropout: float = 0.0) -> Any:
    from torch import nn

    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_outputs)
    )
