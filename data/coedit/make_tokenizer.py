#!/usr/bin/env python3
"""Trains the CoEdIT data's SentencePiece unigram tokenizer, in T5's layout.

  <pad> = 0, </s> = 1 (EOS), <unk> = 2, no BOS, then the learned pieces, then the 100
  sentinels <extra_id_0..99> that transformers' T5Tokenizer appends (extra_ids=100, in
  reverse: <extra_id_0> is the last id), as t5-small's tokenizer has them.

Trained on train.jsonl (instructions, sources and edits) and corpus.jsonl, never on
eval.jsonl; one thread and no sampling, so the model is the same on every run. Writes
tokenizer/spiece.model (the SentencePiece model), and through transformers' T5Tokenizer
(its conversion from the SentencePiece model to a `tokenizers` Unigram) tokenizer.json,
tokenizer_config.json and special_tokens_map.json.

Needs sentencepiece and transformers (the fixtures venv has sentencepiece 0.2.3 and
transformers 5.24.0):
  ~/.cache/fthost/fixtures-venv/bin/python data/coedit/make_tokenizer.py
Run data/coedit/make_data.py first.
"""
import json
import os
import sys
import tempfile
from pathlib import Path

import sentencepiece as spm
from transformers import T5Tokenizer

# SentencePiece pieces asked for (<pad> </s> <unk> included), a soft limit: the grammar's
# ~400 words are each one piece well before 1000, and SentencePiece keeps no more pieces
# than the text uses (411 for this data). The 100 sentinels come on top.
VOCAB_SIZE = 1000
EXTRA_IDS = 100


def training_lines(data):
    lines = []
    with open(data / "train.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            lines += [row["prompt"], row["completion"]]
    with open(data / "corpus.jsonl", encoding="utf-8") as f:
        lines += [json.loads(line)["text"] for line in f]
    return lines


def main():
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    out = data / "tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "train.txt"
        text.write_text("\n".join(training_lines(data)) + "\n", encoding="utf-8")
        # The model records its trainer's input and output names: relative ones, from inside
        # the temporary folder, keep the file the same on every run.
        here = os.getcwd()
        os.chdir(tmp)
        try:
            spm.SentencePieceTrainer.train(
                input="train.txt", model_prefix="spiece", model_type="unigram",
                vocab_size=VOCAB_SIZE, hard_vocab_limit=False, character_coverage=1.0,
                pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
                num_threads=1, input_sentence_size=0, shuffle_input_sentence=False, minloglevel=2)
        finally:
            os.chdir(here)
        model = out / "spiece.model"
        model.write_bytes((Path(tmp) / "spiece.model").read_bytes())
        # transformers builds T5's tokenizer from a folder holding spiece.model alone
        # (converting it to a `tokenizers` Unigram), and saves it with tokenizer.json.
        only_model = Path(tmp) / "slow"
        only_model.mkdir()
        (only_model / "spiece.model").write_bytes(model.read_bytes())
        tok = T5Tokenizer.from_pretrained(str(only_model), extra_ids=EXTRA_IDS)
    tok.save_pretrained(str(out))
    if not (out / "special_tokens_map.json").exists():  # transformers 5 folds it into tokenizer_config.json
        special = {"eos_token": str(tok.eos_token), "unk_token": str(tok.unk_token), "pad_token": str(tok.pad_token),
                   "additional_special_tokens": [f"<extra_id_{i}>" for i in range(EXTRA_IDS)]}
        (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")

    # What the layout promises, checked against the files just written.
    sp = spm.SentencePieceProcessor(model_file=str(model))
    again = T5Tokenizer.from_pretrained(str(out))
    n = sp.get_piece_size()
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
    assert [sp.id_to_piece(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
    assert len(again) == n + EXTRA_IDS, (len(again), n)
    assert again.convert_tokens_to_ids("<extra_id_0>") == n + EXTRA_IDS - 1
    assert again.convert_tokens_to_ids(f"<extra_id_{EXTRA_IDS - 1}>") == n
    sample = "Fix the grammar: The teacher clean the kitchen every morning."
    assert again(sample)["input_ids"] == sp.encode(sample, add_eos=True), "tokenizer.json disagrees with spiece.model"
    print(f"{out}: {n} SentencePiece pieces + {EXTRA_IDS} sentinels = {len(again)} ids; "
          f"'{sample}' -> {len(sp.encode(sample))} pieces")


if __name__ == "__main__":
    main()
