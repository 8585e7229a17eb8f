#!/usr/bin/env python3
"""Checks that what fthost wrote loads in the Hugging Face stack a server would use, and
computes the same thing there:

  merged checkpoint directory (fthost merge --out DIR):
      AutoModelForCausalLM + AutoTokenizer load it; writes DIR.logits.json (transformers'
      fp32 logits on the tokenized chat prompts) for `fthost verify DIR --reference ...`
  final/ of an adapter stage over a Hugging Face base (with --adapter):
      PeftModel loads the adapter onto the base named in adapter_config.json; writes its
      fp32 logits to FINAL_DIR.peft_logits.json for `fthost verify FINAL_DIR --reference ...`
      (the unmerged adapter over the base, as PEFT computes it)

An encoder-decoder (config.json is_encoder_decoder: T5) loads as AutoModelForSeq2SeqLM,
or PeftModelForSeq2SeqLM with --adapter; its reference holds the encoder's input_ids and
attention_mask, the decoder_input_ids (the start id, then a target's first tokens) and
the decoder's logits, as `fthost verify` reads them. --prompt (repeatable) replaces the
default prompts.

Usage (the fixtures venv: scripts/make_fixtures_env.sh):
    ~/.cache/fthost/fixtures-venv/bin/python scripts/check_with_transformers.py MERGED_DIR [--adapter FINAL_DIR]
    build/fthost verify MERGED_DIR --reference MERGED_DIR.logits.json
    build/fthost verify FINAL_DIR --reference FINAL_DIR.peft_logits.json
"""
import argparse
import json
import pathlib

import torch
import transformers

ap = argparse.ArgumentParser()
ap.add_argument("merged")
ap.add_argument("--adapter")
ap.add_argument("--prompt", action="append")
args = ap.parse_args()
merged = pathlib.Path(args.merged)

tok = transformers.AutoTokenizer.from_pretrained(merged)
seq2seq = json.loads((merged / "config.json").read_text()).get("is_encoder_decoder", False)
Auto = transformers.AutoModelForSeq2SeqLM if seq2seq else transformers.AutoModelForCausalLM
# Gemma 2's attention soft-capping is applied by transformers' eager attention only.
config = json.loads((merged / "config.json").read_text())
attention = {"attn_implementation": "eager"} if config.get("attn_logit_softcapping") else {}
model = Auto.from_pretrained(merged, dtype=torch.float32, **attention).eval()
if seq2seq:
    texts = args.prompt or ["Fix the grammar: The kids is happy.", "Paraphrase this: The pilot visits a small town."]
    enc = tok(texts, padding=True)
    start = model.config.decoder_start_token_id
    target = tok("The children are happy today.", add_special_tokens=False)["input_ids"][:6]
    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
              "decoder_input_ids": [[start] + target] * len(texts)}
    ids = enc["input_ids"]
else:
    prompts = [[{"role": "user", "content": q}] for q in (args.prompt or ["organic milk 2%", "fresh basil",
                                                                          "frozen pizza 12 inch"])]
    ids = [tok.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
           for p in prompts]
    width = min(len(i) for i in ids)
    inputs = {"input_ids": [i[:width] for i in ids]}


def logits_of(m):
    with torch.no_grad():
        return m(**{k: torch.tensor(v) for k, v in inputs.items()}).logits


out = merged.with_name(merged.name + ".logits.json")
out.write_text(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__,
                           "architecture": type(model).__name__, **inputs, "logits": logits_of(model).tolist()}) + "\n")
print(f"{merged}: loads as {type(model).__name__} with {type(tok).__name__}; reference logits in {out}")
greedy = model.generate(torch.tensor([ids[0]]), max_new_tokens=6, do_sample=False)
print("greedy:", repr(tok.decode(greedy[0] if seq2seq else greedy[0, len(ids[0]):], skip_special_tokens=True)))

if args.adapter:
    import peft
    cfg = json.loads((pathlib.Path(args.adapter) / "adapter_config.json").read_text())
    base = Auto.from_pretrained(cfg["base_model_name_or_path"], dtype=torch.float32, **attention)
    adapted = peft.PeftModel.from_pretrained(base, args.adapter).eval()
    final = pathlib.Path(args.adapter)
    ref = final.with_name(final.name + ".peft_logits.json")
    ref.write_text(json.dumps({"transformers": transformers.__version__, "peft": peft.__version__,
                               "architecture": type(adapted).__name__, **inputs,
                               "logits": logits_of(adapted).tolist()}) + "\n")
    print(f"{final}: loads as {type(adapted).__name__} over {cfg['base_model_name_or_path']}; reference logits in {ref}")
