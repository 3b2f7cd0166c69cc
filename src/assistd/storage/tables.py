"""Imports every table module so that SQLModel.metadata knows them all (schema creation, migrations)."""

from assistd.storage.assistants import AssistantRow
from assistd.storage.containers import ContainerFileRow, ContainerRow
from assistd.storage.conversations import ConversationItemRow, ConversationRow
from assistd.storage.files import FileRow
from assistd.storage.kernel_homes import KernelHomeRow
from assistd.storage.messages import MessageRow
from assistd.storage.responses import ResponseEventRow, ResponseItemRow, ResponseRow
from assistd.storage.run_events import RunEventRow
from assistd.storage.runs import RunRow
from assistd.storage.steps import StepRow
from assistd.storage.threads import ThreadRow
from assistd.storage.usage import UsageEventRow
from assistd.storage.vector_store_batches import VectorStoreFileBatchRow
from assistd.storage.vector_store_files import VectorStoreFileRow
from assistd.storage.vector_stores import VectorStoreRow
from assistd.storage.workers import WorkerRow

__all__ = [
    "AssistantRow",
    "ContainerFileRow",
    "ContainerRow",
    "ConversationItemRow",
    "ConversationRow",
    "FileRow",
    "KernelHomeRow",
    "MessageRow",
    "ResponseEventRow",
    "ResponseItemRow",
    "ResponseRow",
    "RunEventRow",
    "RunRow",
    "StepRow",
    "ThreadRow",
    "UsageEventRow",
    "VectorStoreFileBatchRow",
    "VectorStoreFileRow",
    "VectorStoreRow",
    "WorkerRow",
]
