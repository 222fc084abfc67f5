"""Train a LoRA adapter on chat-format JSONL: the script behind ``aos adapters train``.

    python -m kernel.ml.train_lora --base-model Qwen/Qwen2.5-7B-Instruct \\
        --train-file data/adapters/cfo-finance/train.jsonl --eval-file data/adapters/cfo-finance/eval.jsonl \\
        --output-dir out/cfo-finance --rank 8 --alpha 16 --target-modules q_proj,v_proj --epochs 3

It is also the whole code snapshot of the Azure ML command job (``kernel/ml/jobs.py``), where it
runs as ``python train_lora.py ...``: so it imports only the standard library, torch,
transformers and peft, never the rest of AOS.

Input: one JSON object per line, ``{"messages": [{"role": "system"|"user"|"assistant"|"tool",
"content": "..."}, ...]}`` (assistant messages may carry ``tool_calls`` in the Hugging Face / OpenAI
shape, tool messages a ``tool_call_id``); a folder means every ``*.jsonl`` file in it. Each
conversation is rendered with the base model's chat template when its tokenizer has one, otherwise
with simple role tags (``<|user|>`` ...). By default the loss covers the assistant messages only
(what the adapter should learn to say), not the prompt.

Output (``--output-dir``): the adapter as peft writes it (``adapter_config.json``,
``adapter_model.safetensors``), ``model_card.json`` and ``README.md``: base model, the SHA-256 of
the training and evaluation data, every hyperparameter, train loss, evaluation loss before and
after training (on the evaluation file, or on a seeded split of the training data), example
counts and the versions of Python, torch, transformers and peft. The last line printed is a JSON
summary. Exit codes: 0 trained, 2 bad arguments or data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import random
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

ROLES = ("system", "user", "assistant", "tool")
CARD_FILE = "model_card.json"
README_FILE = "README.md"
IGNORE_INDEX = -100


class DataError(ValueError):
    """The training or evaluation data cannot be used; the message names the file and line."""


# ----------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train_lora", description="Train a LoRA adapter on chat-format JSONL (see the module docstring)."
    )
    data = parser.add_argument_group("data")
    data.add_argument("--base-model", required=True, help="Hugging Face model id or a local model folder.")
    data.add_argument("--train-file", required=True, type=Path, help="Chat JSONL file, or a folder of *.jsonl.")
    data.add_argument("--eval-file", type=Path, help="Held-out chat JSONL; default: a split of the training data.")
    data.add_argument("--eval-fraction", type=_fraction, default=0.1,
                      help="Share of the training data held out when there is no --eval-file (0: no evaluation).")
    data.add_argument("--output-dir", required=True, type=Path, help="Where the adapter and its model card go.")
    data.add_argument("--max-length", type=_positive_int, default=2048, help="Tokens per example, at most.")
    data.add_argument("--train-on", choices=("assistant", "all"), default="assistant",
                      help="Tokens the loss covers: the assistant messages (default) or the whole conversation.")
    lora = parser.add_argument_group("LoRA")
    lora.add_argument("--rank", type=_positive_int, default=16)
    lora.add_argument("--alpha", type=_positive_int, default=32)
    lora.add_argument("--dropout", type=float, default=0.05)
    lora.add_argument("--target-modules", default="q_proj,v_proj", help="Comma-separated module names.")
    training = parser.add_argument_group("training")
    training.add_argument("--learning-rate", type=float, default=2e-4)
    training.add_argument("--epochs", type=float, default=3.0)
    training.add_argument("--max-steps", type=int, default=-1, help="Stop after this many steps (overrides --epochs).")
    training.add_argument("--batch-size", type=_positive_int, default=4)
    training.add_argument("--gradient-accumulation-steps", type=_positive_int, default=1)
    training.add_argument("--warmup-steps", type=int, default=0)
    training.add_argument("--seed", type=int, default=42)
    training.add_argument("--cpu", action="store_true", help="Train on the CPU even when a GPU is present.")
    training.add_argument("--report-to", default="none", help="Trainer integrations (e.g. mlflow in Azure ML).")
    naming = parser.add_argument_group("naming (recorded in the model card)")
    naming.add_argument("--adapter-name", default="")
    naming.add_argument("--adapter-version", default="")
    return parser


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------


def data_files(path: Path) -> list[Path]:
    """The JSONL files a data argument names: the file itself, or every ``*.jsonl`` in a folder."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.jsonl") if p.is_file())
        if not files:
            raise DataError(f"{path}: the folder holds no *.jsonl file")
        return files
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return [path]


def data_sha256(path: Path) -> str:
    """SHA-256 of a data file's bytes; for a folder, of each file's relative name and digest in order."""
    files = data_files(path)
    if not path.is_dir():
        return hashlib.sha256(files[0].read_bytes()).hexdigest()
    outer = hashlib.sha256()
    for file in files:
        outer.update(f"{file.relative_to(path).as_posix()}\0{hashlib.sha256(file.read_bytes()).hexdigest()}\n".encode())
    return outer.hexdigest()


def read_conversations(path: Path) -> list[list[dict[str, Any]]]:
    """Every conversation in the file(s); a malformed line is a :class:`DataError` naming it."""
    conversations: list[list[dict[str, Any]]] = []
    for file in data_files(path):
        with file.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{file}:{number}"
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(f"{where}: not JSON ({error.msg})") from None
                conversations.append(_check_conversation(item, where))
    if not conversations:
        raise DataError(f"{path}: no conversations")
    return conversations


def _check_conversation(item: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(item, dict) or not isinstance(item.get("messages"), list) or not item["messages"]:
        raise DataError(f'{where}: expected {{"messages": [{{"role": ..., "content": ...}}, ...]}}')
    messages = []
    for index, message in enumerate(item["messages"]):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise DataError(f"{where}: message {index} needs a role, one of {', '.join(ROLES)}")
        content = message.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise DataError(f"{where}: message {index} has non-text content")
        messages.append({**message, "content": content})
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where}: no assistant message, so nothing to learn")
    return messages


def split(conversations: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """A seeded train/eval split; evaluation gets at least one example when asked for any."""
    if fraction <= 0 or len(conversations) < 2:
        return list(conversations), []
    order = list(range(len(conversations)))
    random.Random(seed).shuffle(order)
    held = max(1, round(len(conversations) * fraction))
    held_out = set(order[:held])
    return ([c for i, c in enumerate(conversations) if i not in held_out],
            [c for i, c in enumerate(conversations) if i in held_out])


# ----------------------------------------------------------------------------------------------
# rendering and tokenizing
# ----------------------------------------------------------------------------------------------


def _tool_calls_text(message: dict[str, Any]) -> str:
    calls = message.get("tool_calls") or []
    parts = []
    for call in calls:
        function = call.get("function", call) if isinstance(call, dict) else {}
        parts.append("<tool_call>" + json.dumps({"name": function.get("name"), "arguments": function.get("arguments")},
                                                 ensure_ascii=False, sort_keys=True) + "</tool_call>")
    return "\n".join(parts)


def render_role_tags(messages: list[dict[str, Any]], eos: str) -> tuple[str, list[tuple[int, int]]]:
    """``<|role|>`` tagged text and the character spans of the assistant messages (their end token included)."""
    text, spans = "", []
    for message in messages:
        text += f"<|{message['role']}|>\n"
        body = message["content"]
        calls = _tool_calls_text(message)
        if calls:
            body = f"{body}\n{calls}" if body else calls
        if message["role"] == "assistant":
            start = len(text)
            text += body + eos
            spans.append((start, len(text)))
        else:
            text += body
        text += "\n"
    return text, spans


def render_chat_template(messages: list[dict[str, Any]], tokenizer: Any) -> tuple[str, list[tuple[int, int]] | None]:
    """The conversation through the tokenizer's chat template, and the assistant spans.

    A span is what rendering the conversation up to an assistant message adds to rendering it up
    to the generation prompt before it. ``None`` for spans when the template does not render
    prefixes as prefixes (some drop earlier reasoning): then the caller trains on every token.
    """
    def render(part: list[dict[str, Any]], prompt: bool) -> str:
        return tokenizer.apply_chat_template(part, tokenize=False, add_generation_prompt=prompt)

    full = render(messages, False)
    spans: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(messages[:index], True) if index else ""
        upto = render(messages[: index + 1], False)
        if not (upto.startswith(before) and full.startswith(upto)):
            return full, None
        spans.append((len(before), len(upto)))
    return full, spans


@dataclass
class Encoded:
    examples: list[dict[str, list[int]]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    prompt_format: str = "role_tags"
    loss_on: str = "assistant"
    truncated: int = 0

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def encode(conversations: list[list[dict[str, Any]]], tokenizer: Any, *, max_length: int, train_on: str) -> Encoded:
    """Token ids, attention masks and labels (``-100`` outside the trained spans) per conversation."""
    templated = bool(getattr(tokenizer, "chat_template", None))
    result = Encoded(prompt_format="chat_template" if templated else "role_tags", loss_on=train_on)
    eos = tokenizer.eos_token or ""
    for messages in conversations:
        if templated:
            text, spans = render_chat_template(messages, tokenizer)
            if spans is None:
                result.loss_on = "all (the chat template does not render prefixes as prefixes)"
        else:
            text, spans = render_role_tags(messages, eos)
        tokens = tokenizer(text, add_special_tokens=not templated, truncation=True, max_length=max_length,
                           return_offsets_mapping=True)
        ids, offsets = tokens["input_ids"], tokens["offset_mapping"]
        if len(tokenizer(text, add_special_tokens=not templated)["input_ids"]) > max_length:
            result.truncated += 1
        if train_on == "all" or spans is None:
            labels = list(ids)
        else:
            labels = [token if any(start < b and end > a for a, b in spans) else IGNORE_INDEX
                      for token, (start, end) in zip(ids, offsets)]
        if all(label == IGNORE_INDEX for label in labels):
            result.skip("no assistant tokens within --max-length")
            continue
        result.examples.append({"input_ids": list(ids), "attention_mask": [1] * len(ids), "labels": labels})
    return result


class PadCollator:
    """Pads a batch to its longest example: pad id for inputs, 0 for the mask, -100 for labels."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(item["input_ids"]) for item in batch)
        def pad(key: str, value: int) -> Any:
            return torch.tensor([item[key] + [value] * (width - len(item[key])) for item in batch], dtype=torch.long)
        return {"input_ids": pad("input_ids", self.pad_id), "attention_mask": pad("attention_mask", 0),
                "labels": pad("labels", IGNORE_INDEX)}


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What :func:`train` produced: the trained PeftModel (in eval mode), its tokenizer and the card."""

    model: Any
    tokenizer: Any
    card: dict[str, Any]
    output_dir: Path


def train(args: argparse.Namespace) -> TrainResult:
    import peft
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    # transformers' own internals call a property it deprecated; nothing to act on here
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    started = time.monotonic()
    target_modules = [m.strip() for m in args.target_modules.split(",") if m.strip()]
    if not target_modules:
        raise DataError("--target-modules names no module")
    if not 0.0 <= args.dropout < 1.0:
        raise DataError(f"--dropout must be in [0, 1), got {args.dropout}")

    train_conversations = read_conversations(args.train_file)
    if args.eval_file is not None:
        eval_conversations = read_conversations(args.eval_file)
        evaluation_source = {"path": str(args.eval_file), "sha256": data_sha256(args.eval_file)}
    else:
        train_conversations, eval_conversations = split(train_conversations, args.eval_fraction, args.seed)
        evaluation_source = {"split_from_training": args.eval_fraction} if eval_conversations else None

    transformers.set_seed(args.seed)
    use_cpu = args.cpu or not torch.cuda.is_available()
    bf16 = not use_cpu and torch.cuda.is_bf16_supported()
    tokenizer = AutoTokenizer.from_pretrained(args.base_model)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise DataError(f"the tokenizer of {args.base_model} has neither a pad nor an end-of-sequence token")
        tokenizer.pad_token = tokenizer.eos_token
    train_set = encode(train_conversations, tokenizer, max_length=args.max_length, train_on=args.train_on)
    eval_set = encode(eval_conversations, tokenizer, max_length=args.max_length, train_on=args.train_on)
    if not train_set.examples:
        raise DataError(f"{args.train_file}: no example has assistant tokens within --max-length {args.max_length}")

    model = AutoModelForCausalLM.from_pretrained(args.base_model, dtype=torch.bfloat16 if bf16 else torch.float32)
    lora = LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=args.dropout, target_modules=target_modules,
                      bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    trainable, total = model.get_nb_trainable_parameters()

    with tempfile.TemporaryDirectory(prefix="train-lora-") as scratch:
        training_args = TrainingArguments(
            output_dir=scratch, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
            gradient_accumulation_steps=args.gradient_accumulation_steps, learning_rate=args.learning_rate,
            num_train_epochs=args.epochs, max_steps=args.max_steps, warmup_steps=args.warmup_steps,
            logging_steps=1, save_strategy="no", eval_strategy="no", report_to=args.report_to, seed=args.seed,
            data_seed=args.seed, use_cpu=use_cpu, bf16=bf16, remove_unused_columns=False, disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=training_args, train_dataset=train_set.examples,
                          eval_dataset=eval_set.examples or None, data_collator=PadCollator(tokenizer.pad_token_id))
        eval_before = trainer.evaluate()["eval_loss"] if eval_set.examples else None
        outcome = trainer.train()
        eval_after = trainer.evaluate()["eval_loss"] if eval_set.examples else None
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]

    model.eval()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.output_dir)

    metrics: dict[str, Any] = {
        "train_loss": _round(outcome.training_loss),
        "train_loss_last": _round(losses[-1]) if losses else None,
        "eval_loss": _round(eval_after),
        "eval_loss_before": _round(eval_before),
        "eval_perplexity": _round(math.exp(eval_after)) if eval_after is not None and eval_after < 50 else None,
        "steps": trainer.state.global_step,
        "epochs": _round(trainer.state.epoch),
        "train_examples": len(train_set.examples),
        "eval_examples": len(eval_set.examples),
        "train_seconds": round(time.monotonic() - started, 2),
        "trainable_parameters": trainable,
        "total_parameters": total,
    }
    card = {
        "adapter": {"name": args.adapter_name or None, "version": args.adapter_version or None},
        "format": "peft-lora",
        "base_model": args.base_model,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": {
            "training": {"path": str(args.train_file), "sha256": data_sha256(args.train_file),
                         "examples": len(train_set.examples), "skipped": train_set.skipped,
                         "truncated": train_set.truncated},
            "evaluation": None if evaluation_source is None else {
                **evaluation_source, "examples": len(eval_set.examples), "skipped": eval_set.skipped,
                "truncated": eval_set.truncated},
            "format": "chat-jsonl",
            "prompt_format": train_set.prompt_format,
            "loss_on": train_set.loss_on,
        },
        "hyperparameters": {
            "rank": args.rank, "alpha": args.alpha, "dropout": args.dropout, "target_modules": target_modules,
            "learning_rate": args.learning_rate, "epochs": args.epochs, "max_steps": args.max_steps,
            "batch_size": args.batch_size, "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "warmup_steps": args.warmup_steps, "max_length": args.max_length, "seed": args.seed,
            "eval_fraction": args.eval_fraction if args.eval_file is None else None,
        },
        "metrics": metrics,
        "environment": {
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "device": "cpu" if use_cpu else torch.cuda.get_device_name(0),
            "dtype": "bfloat16" if bf16 else "float32",
        },
    }
    write_card(args.output_dir, card)
    return TrainResult(model=model, tokenizer=tokenizer, card=card, output_dir=args.output_dir)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def write_card(directory: Path, card: dict[str, Any]) -> None:
    """``model_card.json`` and a Hugging Face style ``README.md`` (replacing the one peft writes)."""
    (directory / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (directory / README_FILE).write_text(render_readme(card), encoding="utf-8")


def render_readme(card: dict[str, Any]) -> str:
    adapter = card["adapter"]
    title = adapter["name"] or "LoRA adapter"
    if adapter["version"]:
        title += f" (version {adapter['version']})"
    data, metrics = card["data"], card["metrics"]
    lines = [
        "---",
        f"base_model: {json.dumps(card['base_model'])}",
        "library_name: peft",
        "tags: [lora, aos]",
        "---",
        "",
        f"# {title}",
        "",
        f"A LoRA adapter for `{card['base_model']}`, trained by AOS (`kernel/ml/train_lora.py`) on "
        f"{card['created']}.",
        "",
        "## Data",
        "",
        "| set | examples | sha256 |",
        "| --- | --- | --- |",
        f"| training (`{data['training']['path']}`) | {data['training']['examples']} | `{data['training']['sha256']}` |",
    ]
    evaluation = data["evaluation"]
    if evaluation is None:
        lines.append("| evaluation | none | |")
    elif "path" in evaluation:
        lines.append(f"| evaluation (`{evaluation['path']}`) | {evaluation['examples']} | `{evaluation['sha256']}` |")
    else:
        lines.append(f"| evaluation ({evaluation['split_from_training']:.0%} split of training) | "
                     f"{evaluation['examples']} | |")
    lines += ["", f"Prompt format: {data['prompt_format']}; loss on: {data['loss_on']}.", "",
              "## Hyperparameters", "", "| name | value |", "| --- | --- |"]
    lines += [f"| {k} | {json.dumps(v)} |" for k, v in card["hyperparameters"].items()]
    lines += ["", "## Metrics", "", "| name | value |", "| --- | --- |"]
    lines += [f"| {k} | {json.dumps(v)} |" for k, v in metrics.items()]
    lines += ["", "## Environment", "", "| name | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in card["environment"].items()]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = train(args)
    except DataError as error:
        print(f"train_lora: {error}", file=sys.stderr)
        return 2
    summary = {"output_dir": str(result.output_dir), "metrics": result.card["metrics"],
               "training_sha256": result.card["data"]["training"]["sha256"]}
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
