"""What a training run leaves behind: one number per epoch for each curve."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class History:
    """Per-epoch curves of a run; ``plot()`` draws them.

    ``val_loss``/``val_accuracy`` stay empty without validation data. ``best_epoch`` is the
    epoch (0-based) with the lowest validation loss, whose weights the model ends with when
    early stopping is on; ``stopped_early`` says whether patience ran out.
    """

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> History:
        return cls(**state)

    def plot(self, axes: Any = None) -> Any:
        """Loss and accuracy curves (train and validation); returns the figure."""
        from mmcourse.viz.training import plot_history

        return plot_history(self, axes=axes)

    def __repr__(self) -> str:
        def last(xs: list[float]) -> str:
            return f"{xs[-1]:.4f}" if xs else "-"

        return (
            f"History(epochs={self.epochs}, train_loss={last(self.train_loss)}, "
            f"val_loss={last(self.val_loss)}, val_accuracy={last(self.val_accuracy)}, "
            f"best_epoch={self.best_epoch}, stopped_early={self.stopped_early})"
        )
