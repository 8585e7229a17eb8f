#!/usr/bin/env python3
"""The peer side of bench/t5_peer.sh: Hugging Face transformers (+ PEFT for LoRA) training
T5ForConditionalGeneration with the plain PyTorch loop a careful user writes (no Trainer:
it would shuffle with its own sampler), on the same rows, in the same order, with the same
token ids, starting weights, optimiser, schedule, steps and CPU threads as the fthost
stage beside it:

- tokens: transformers' T5TokenizerFast from the checkpoint folder (data/coedit/tokenizer's
  files): source = tok(prompt).input_ids (ends with </s>), target = tok(completion,
  add_special_tokens=False).input_ids + [</s>]; as fthost, prompt and completion together
  are cut to MAX_SEQ_LEN (the source keeps its share first);
- order: fthost's with [stage.data] shuffle = false: the file's rows in order, BATCH at a
  time, a short last batch ending the epoch, then the file again;
- loss: the mean cross-entropy over the batch's target tokens (transformers' labels loss);
  the decoder reads the labels shifted right after decoder_start_token_id (0), padding
  masked in the encoder, labels -100 on padding;
- AdamW (torch.optim, fused), betas 0.9/0.999, eps 1e-8, weight decay WD on tensors of
  two or more dims only (fthost's rule: never on norms and biases), gradient norm clipped
  at 1.0, constant learning rate;
- LoRA: r 16, alpha 32, no dropout, every linear layer but the head (PEFT's all-linear);
  with ADAPTER_INIT (the adapter fthost saved after one step at lr 1e-30, i.e. its own
  initial A) the same starting adapter, B reset to 0.

Prints one JSON line: steps, seconds (the training loop: collation, forward, backward,
clip, step), tokens (non-padding source + target tokens trained on), decoder_tokens
(1 + target length per row: what fthost's summary counts), tokens/s, peak RSS, the loss of
every step, the mean train loss of the last 20 and the held-out loss (the mean over every
target token of EVAL).
Usage: hf_t5.py INIT_DIR TRAIN.jsonl EVAL.jsonl full|lora STEPS LR THREADS BATCH MAX_SEQ_LEN WD [ADAPTER_INIT]"""
import json
import resource
import sys
import time

import torch

init, train_file, eval_file, mode, steps, lr, threads, batch, max_len, wd = sys.argv[1:11]
adapter_init = sys.argv[11] if len(sys.argv) > 11 else ""
steps, lr, threads, batch, max_len, wd = int(steps), float(lr), int(threads), int(batch), int(max_len), float(wd)
torch.set_num_threads(threads)
torch.manual_seed(1234)

import peft  # noqa: E402
import transformers  # noqa: E402

tok = transformers.T5TokenizerFast.from_pretrained(init)
EOS, PAD = tok.eos_token_id, tok.pad_token_id


def rows(path):
    out, cut = [], 0
    for line in open(path):
        r = json.loads(line)
        src = tok(r["prompt"]).input_ids
        tgt = tok(r["completion"], add_special_tokens=False).input_ids + [EOS]
        if len(src) + len(tgt) > max_len:  # fthost: prompt + completion cut to max_seq_len together
            cut += 1
            both = (src + tgt)[:max_len]
            src, tgt = both[:min(len(src), max_len)], both[len(src):]
        if not tgt:
            raise SystemExit(f"{path}: a row has no target left at max_seq_len {max_len}")
        out.append((src, tgt))
    return out, cut


def collate(examples):
    s = max(len(x) for x, _ in examples)
    t = max(len(y) for _, y in examples)
    ids = torch.full((len(examples), s), PAD, dtype=torch.long)
    mask = torch.zeros((len(examples), s), dtype=torch.long)
    labels = torch.full((len(examples), t), -100, dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
        labels[i, :len(y)] = torch.tensor(y)
    return ids, mask, labels  # decoder_input_ids: the model shifts the labels right itself


def batches(data):  # fthost's order with shuffle = false
    while True:
        for i in range(0, len(data), batch):
            yield data[i:i + batch]


train, train_cut = rows(train_file)
evals, eval_cut = rows(eval_file)
model = transformers.T5ForConditionalGeneration.from_pretrained(init, dtype=torch.float32)
assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr(), "expected an own (untied) LM head"
if mode == "lora":
    if adapter_init:
        model = peft.PeftModel.from_pretrained(model, adapter_init, is_trainable=True)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.zero_()
    else:
        model = peft.get_peft_model(model, peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                                           target_modules="all-linear", task_type="SEQ_2_SEQ_LM"))
named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
params = [p for _, p in named]
opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() > 1], "weight_decay": wd},
                         {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}],
                        lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=True)
model.train()
losses, tokens, decoder_tokens = [], 0, 0
stream = batches(train)
t0 = time.perf_counter()
for step in range(steps):
    examples = next(stream)
    ids, mask, labels = collate(examples)
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    losses.append(loss.item())
    tokens += sum(len(x) + len(y) for x, y in examples)
    decoder_tokens += sum(1 + len(y) for _, y in examples)
seconds = time.perf_counter() - t0

model.eval()
loss_sum, n = 0.0, 0
with torch.no_grad():
    for i in range(0, len(evals), 64):
        ids, mask, labels = collate(evals[i:i + 64])
        logits = model(input_ids=ids, attention_mask=mask, labels=labels).logits
        loss_sum += torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(),
                                                      ignore_index=-100, reduction="sum").item()
        n += int((labels != -100).sum())
last = losses[-20:]
print(json.dumps({"framework": "hf", "mode": mode, "steps": steps, "seconds": seconds, "tokens": tokens,
                  "decoder_tokens": decoder_tokens, "tokens_per_s": tokens / seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "trainable": sum(p.numel() for p in params), "losses": losses,
                  "train_loss_last20": sum(last) / len(last), "eval_loss": loss_sum / n,
                  "rows_cut": train_cut + eval_cut,
                  "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                               "peft": peft.__version__}}))
