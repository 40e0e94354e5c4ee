"""The analysis pipeline: one typed pass over a mail, from code mentions to decisions."""

from consultant.analysis.model import Analysis, QType
from consultant.analysis.pipeline import analyse

__all__ = ["Analysis", "QType", "analyse"]
