"""`lead mine`: hard negatives mined from a run into training groups (see `stage`)."""

from lead_core.mine.stage import Config, mine_groups, run

__all__ = ["Config", "mine_groups", "run"]
