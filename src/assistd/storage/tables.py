"""Imports every table module so that SQLModel.metadata knows them all (schema creation, migrations)."""

from assistd.storage.assistants import AssistantRow
from assistd.storage.files import FileRow
from assistd.storage.messages import MessageRow
from assistd.storage.runs import RunRow
from assistd.storage.steps import StepRow
from assistd.storage.threads import ThreadRow

__all__ = ["AssistantRow", "FileRow", "MessageRow", "RunRow", "StepRow", "ThreadRow"]
