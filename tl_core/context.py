"""The context of one training run, handed to ``tl_train`` and the event hooks: where it writes, how it talks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from tl_core import plugins

if TYPE_CHECKING:
    from tl_core.sections import Recipe


@dataclass
class RunContext:
    """Handed to ``tl_train`` and the event hooks: the recipe, the output folder, the console, the state."""

    recipe: Recipe
    out: Path
    resume: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=True))
    quiet: bool = False
    name: str = "transfer"  # "transfer" for the main run, "scratch" for the from-scratch comparison
    info: dict[str, Any] = field(default_factory=dict)  # anything a plugin wants in the report
    main_process: bool = True  # under `accelerate launch`, only the main process fires events and writes

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False, soft_wrap=True)  # a line is never broken: copy it whole

    def epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """Fire ``tl_on_epoch_end`` on every plugin (trainers call this after each epoch)."""
        if self.main_process:
            plugins.hook().tl_on_epoch_end(ctx=self, epoch=epoch, metrics=metrics)
