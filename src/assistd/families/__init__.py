"""Model families: reasoning markup, tool-call syntax and template variables per family of chat template."""

from assistd.families.channels import HarmonyChannels, Piece, ReplyChannels, ThinkChannels
from assistd.families.registry import CHOICES, FAMILIES, Family, UnknownFamily, family_for, family_named

__all__ = [
    "CHOICES",
    "FAMILIES",
    "Family",
    "HarmonyChannels",
    "Piece",
    "ReplyChannels",
    "ThinkChannels",
    "UnknownFamily",
    "family_for",
    "family_named",
]
