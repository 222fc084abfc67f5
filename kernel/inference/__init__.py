"""Inference: one port for every model call; the offline provider is the embedded default."""

from kernel.inference.port import ChatMessage, ChatRequest, Completion, InferenceProvider, ToolCall, ToolSpec, Usage

__all__ = ["ChatMessage", "ChatRequest", "Completion", "InferenceProvider", "ToolCall", "ToolSpec", "Usage"]
