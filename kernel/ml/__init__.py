"""LoRA adapters: training (``train_lora``), Azure ML jobs (``jobs``), the adapter registry
(``registry``), training data exported from agents' archived turns (``export``, ``redaction``)
and the ``aos adapters`` commands (``cli``). See docs/adapters.md.

Nothing here is imported by the Function Apps. ``train_lora`` needs the ``ml`` extra (torch,
transformers, peft); ``jobs`` and the Azure side of ``registry`` need azure-ai-ml. Both are
imported only when a command needs them.
"""
