"""kernel/ml/train_lora.py: a real LoRA on a tiny random Llama, on the CPU, with no download.

The data tests need only the standard library; the training tests need the ml extra and skip
(with the reason) without it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kernel.ml import train_lora
from tests.ml.support import conversations, requires_torch, write_jsonl

SCRIPT = Path(train_lora.__file__)
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{% if m['role'] == 'assistant' %}</s>{% endif %}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _args(base: Path, train: Path, out: Path, *extra: str) -> list[str]:
    return ["--base-model", str(base), "--train-file", str(train), "--output-dir", str(out), "--rank", "4",
            "--alpha", "8", "--dropout", "0.0", "--learning-rate", "5e-3", "--batch-size", "4", "--seed", "7", *extra]


# -- data (standard library only) ---------------------------------------------------------------


def test_the_script_imports_only_the_standard_library_torch_transformers_and_peft() -> None:
    """It is the whole code snapshot of the Azure ML job, so it cannot import the rest of AOS."""
    tree = ast.parse(SCRIPT.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    allowed = set(sys.stdlib_module_names) | {"torch", "transformers", "peft", "__future__"}
    assert roots <= allowed, roots - allowed


def test_reads_chat_jsonl_and_names_the_bad_line(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", conversations(3))
    assert len(train_lora.read_conversations(good)) == 3

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(conversations(1)[0]) + "\n\n{not json\n")
    with pytest.raises(train_lora.DataError, match=r"bad\.jsonl:3: not JSON"):
        train_lora.read_conversations(bad)
    no_answer = write_jsonl(tmp_path / "no-answer.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(train_lora.DataError, match="no assistant message"):
        train_lora.read_conversations(no_answer)
    wrong_role = write_jsonl(tmp_path / "role.jsonl", [{"messages": [{"role": "robot", "content": "x"}]}])
    with pytest.raises(train_lora.DataError, match="message 0 needs a role"):
        train_lora.read_conversations(wrong_role)


def test_a_folder_is_every_jsonl_in_it_and_hashes_by_name_and_content(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "a.jsonl", conversations(2))
    write_jsonl(tmp_path / "data" / "b.jsonl", conversations(2, offset=2))
    assert len(train_lora.read_conversations(tmp_path / "data")) == 4
    before = train_lora.data_sha256(tmp_path / "data")
    (tmp_path / "data" / "b.jsonl").rename(tmp_path / "data" / "c.jsonl")
    assert train_lora.data_sha256(tmp_path / "data") != before


def test_seeded_split_is_stable_and_keeps_one_for_evaluation() -> None:
    items = list(range(10))
    assert train_lora.split(items, 0.2, 1) == train_lora.split(items, 0.2, 1)
    train, held = train_lora.split(items, 0.01, 1)
    assert len(held) == 1 and sorted(train + held) == items
    assert train_lora.split(items, 0.0, 1) == (items, [])


def test_role_tags_mark_the_assistant_spans() -> None:
    messages = conversations(1)[0]["messages"] + [
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function",
                                                             "function": {"name": "erp__lookup", "arguments": {"id": 1}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        {"role": "assistant", "content": "Done."},
    ]
    text, spans = train_lora.render_role_tags(messages, "</s>")
    assert [text[a:b] for a, b in spans] == [
        messages[2]["content"] + "</s>",
        '<tool_call>{"arguments": {"id": 1}, "name": "erp__lookup"}</tool_call></s>',
        "Done.</s>",
    ]
    assert text.startswith("<|system|>\nYou are the finance agent.")


# -- training (ml extra) -----------------------------------------------------------------------


@requires_torch
def test_trains_saves_reloads_with_identical_logits_and_writes_the_card(tiny_base: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    train_file = write_jsonl(tmp_path / "train.jsonl", conversations(16))
    eval_file = write_jsonl(tmp_path / "eval.jsonl", conversations(4, offset=40))
    out = tmp_path / "adapter"
    args = train_lora.build_parser().parse_args(
        _args(tiny_base, train_file, out, "--eval-file", str(eval_file), "--max-steps", "12",
              "--adapter-name", "tiny-finance", "--adapter-version", "3"))
    result = train_lora.train(args)

    assert {"adapter_config.json", "adapter_model.safetensors", "model_card.json", "README.md"} <= {
        p.name for p in out.iterdir()}
    probe = result.tokenizer("Invoice from Contoso for 300 EUR.", return_tensors="pt")
    with torch.no_grad():
        trained = result.model(**probe).logits
    reloaded_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_base)), str(out)).eval()
    base_model = AutoModelForCausalLM.from_pretrained(str(tiny_base)).eval()
    with torch.no_grad():
        reloaded = reloaded_model(**probe).logits
        base = base_model(**probe).logits
    assert torch.equal(trained, reloaded)
    assert not torch.allclose(trained, base)  # the adapter changed something

    card = json.loads((out / "model_card.json").read_text())
    assert card == result.card
    assert card["adapter"] == {"name": "tiny-finance", "version": "3"}
    assert card["base_model"] == str(tiny_base)
    assert card["data"]["training"]["sha256"] == hashlib.sha256(train_file.read_bytes()).hexdigest()
    assert card["data"]["evaluation"]["sha256"] == hashlib.sha256(eval_file.read_bytes()).hexdigest()
    assert card["data"]["training"]["examples"] == 16 and card["data"]["evaluation"]["examples"] == 4
    assert card["data"]["prompt_format"] == "role_tags" and card["data"]["loss_on"] == "assistant"
    expected = {"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"], "learning_rate": 5e-3,
                "max_steps": 12, "seed": 7, "eval_fraction": None}
    assert {key: card["hyperparameters"][key] for key in expected} == expected
    metrics = card["metrics"]
    assert metrics["steps"] == 12
    assert metrics["eval_loss"] > 0 and metrics["train_loss"] > 0
    assert metrics["eval_loss"] < metrics["eval_loss_before"]  # it learned something held out
    assert card["environment"]["torch"] == torch.__version__ and card["environment"]["device"] == "cpu"
    readme = (out / "README.md").read_text()
    assert f"base_model: \"{tiny_base}\"" in readme and card["data"]["training"]["sha256"] in readme
    assert "| eval_loss |" in readme


@requires_torch
def test_labels_cover_only_the_assistant_reply_with_a_chat_template(tmp_path: Path) -> None:
    from tests.ml.support import build_base_model

    base = build_base_model(tmp_path / "templated", chat_template=CHAT_TEMPLATE)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    messages = conversations(1)[0]["messages"]
    encoded = train_lora.encode([messages], tokenizer, max_length=512, train_on="assistant")
    assert encoded.prompt_format == "chat_template" and encoded.loss_on == "assistant"
    labels = [t for t in encoded.examples[0]["labels"] if t != train_lora.IGNORE_INDEX]
    assert tokenizer.decode(labels).rstrip("\n") == messages[2]["content"] + "</s>"
    everything = train_lora.encode([messages], tokenizer, max_length=512, train_on="all")
    assert everything.examples[0]["labels"] == everything.examples[0]["input_ids"]
    short = train_lora.encode([messages], tokenizer, max_length=8, train_on="assistant")
    assert short.examples == [] and short.skipped == {"no assistant tokens within --max-length": 1}


@requires_torch
def test_runs_as_a_standalone_file_with_a_split_for_evaluation(tiny_base: Path, tmp_path: Path) -> None:
    """As in the Azure ML job: `python train_lora.py ...` from another folder, no eval file."""
    train_file = write_jsonl(tmp_path / "train.jsonl", conversations(10))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(SCRIPT), *_args(tiny_base, train_file, out, "--max-steps", "3",
                                                                 "--eval-fraction", "0.2")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["metrics"]["steps"] == 3 and summary["metrics"]["eval_examples"] == 2
    card = json.loads((out / "model_card.json").read_text())
    assert card["data"]["evaluation"] == {"split_from_training": 0.2, "examples": 2, "skipped": {}, "truncated": 0}


@requires_torch
def test_bad_data_exits_2_with_the_reason(tiny_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"messages": []}\n')
    assert train_lora.main(_args(tiny_base, bad, tmp_path / "out")) == 2
    assert "train.jsonl:1: expected" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
