"""Chat: sides (base or an adapter at a checkpoint), generation (settings and what it reports), session
(conversations, the model worker thread, batch compare). The model itself is chat.model (imports mlx):
import it directly, and only off the UI thread.
This is the package's public face: other packages import from here, not from its modules."""

from phi3tui.core.chat.generation import GenerationSettings
from phi3tui.core.chat.session import (
    ChatSession,
    ComparePrompt,
    ModelWorker,
    batch_compare,
    model_path,
    prompt_from_record,
    read_prompts,
)
from phi3tui.core.chat.tools import ChatTools, load_tools, tool_files, tools_note
from phi3tui.core.chat.sides import (
    BASE,
    END_TOKEN,
    ChatError,
    describe_error,
    newest_adapter,
    side_choices,
    side_for_path,
)

__all__ = [
    "BASE",
    "END_TOKEN",
    "ChatError",
    "ChatSession",
    "ChatTools",
    "ComparePrompt",
    "GenerationSettings",
    "ModelWorker",
    "batch_compare",
    "describe_error",
    "load_tools",
    "model_path",
    "newest_adapter",
    "prompt_from_record",
    "read_prompts",
    "side_choices",
    "side_for_path",
    "tool_files",
    "tools_note",
]
