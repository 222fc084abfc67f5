"""Helpers of the LoRA tests: a tiny local base model, chat data, scratch configs.

Nothing is downloaded: the tokenizer is trained with ``tokenizers`` on the tests' own text and the
model is a 2-layer ``LlamaForCausalLM`` with hidden size 64 and random weights (seeded).
"""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest



def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


HAS_TORCH = all(_installed(name) for name in ("torch", "transformers", "peft"))
HAS_AZURE_ML = _installed("azure.ai.ml")

requires_torch = pytest.mark.skipif(
    not HAS_TORCH, reason="needs the ml extra (torch, transformers, peft): `make test` installs it, or "
    "`pip install torch==2.13.0` then `pip install -e '.[dev,ml]'`")
requires_azure_ml = pytest.mark.skipif(
    not HAS_AZURE_ML, reason="needs azure-ai-ml (the ml extra; `make test` installs it)")

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]


def conversations(count: int, *, offset: int = 0) -> list[dict[str, Any]]:
    """Deterministic chat examples: an invoice event and a short decision."""
    vendors = ["Contoso", "Fabrikam", "Northwind", "Tailspin", "Litware", "Adatum"]
    lines = []
    for n in range(offset, offset + count):
        vendor, amount = vendors[n % len(vendors)], 100 * (n + 1)
        verdict = "approve" if amount <= 1200 else "escalate to the CFO"
        lines.append({"messages": [
            {"role": "system", "content": "You are the finance agent. Answer with a decision and its rationale."},
            {"role": "user", "content": f"Invoice from {vendor} for {amount} EUR."},
            {"role": "assistant", "content": f"Decision: {verdict}. Rationale: {amount} EUR against a 1200 EUR limit."},
        ]})
    return lines


def write_jsonl(path: Path, items: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path


def build_base_model(directory: Path, *, chat_template: str | None = None) -> Path:
    """Save a tiny Llama and its tokenizer in ``directory``; returns it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [m["content"] for c in conversations(60) for m in c["messages"]]
    corpus += ["<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", "Decision approve escalate Rationale"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")
    if chat_template:
        fast.chat_template = chat_template
    directory.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(directory)

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def write_configs(root: Path, *, base_model: str, train: str, evaluation: str | None = None,
                  extra: str = "", version: str = "1", agent_version: str | None = None) -> Path:
    """agent_configs/ with adapter `tiny-finance` and agent `fin` that uses it, under ``root``."""
    folder = root / "agent_configs"
    folder.mkdir(parents=True, exist_ok=True)
    evaluation_block = f"evaluation_data:\n  uri: {evaluation}\n" if evaluation else ""
    (folder / "tiny-finance.adapter.yaml").write_text(
        textwrap.dedent(f"""\
            kind: adapter
            name: tiny-finance
            version: "{version}"
            description: A tiny adapter for tests.
            base_model: {base_model}
            rank: 4
            alpha: 8
            dropout: 0.0
            target_modules: [q_proj, v_proj]
            training_data:
              uri: {train}
            """) + evaluation_block + extra, encoding="utf-8")
    pin = f"\n    version: \"{agent_version}\"" if agent_version else ""
    (folder / "fin.yaml").write_text(
        textwrap.dedent("""\
            id: fin
            display_name: Finance Agent
            purpose: Review invoices against budget and decide with a rationale.
            scope:
              in_scope: [invoices and budgets]
              out_of_scope: [hiring]
            model:
              adapter:
                name: tiny-finance""") + pin + "\n", encoding="utf-8")
    (folder / "other.yaml").write_text(
        "id: other\ndisplay_name: Other Agent\npurpose: Something else entirely.\n", encoding="utf-8")
    return folder
