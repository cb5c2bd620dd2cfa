"""`lead train`: one trainer for phase-1 DE, teacher/student warm-ups and distillation (LEAD, RD, FD)."""

from lead_core.train.stage import Config, run
from lead_core.train.trainer import StepInfo

__all__ = ["Config", "StepInfo", "run"]
