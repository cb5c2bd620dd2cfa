"""`lead export`: a saved lead model as a sentence-transformers or plain transformers folder (see `stage`)."""

from lead_core.export.stage import FORMATS, NOTE_FILE, Config, export_model, run

__all__ = ["FORMATS", "NOTE_FILE", "Config", "export_model", "run"]
