"""(in progress)"""
from __future__ import annotations

from mailer.core import Core


class Archive(Core):
    pass
