#!/usr/bin/env python3
"""The peer side of bench/gpu_train.sh: transformers + PEFT trained by the plain loop a
careful user writes — bf16 autocast over fp32 weights, scaled_dot_product_attention,
torch.optim.AdamW(fused=True) on CUDA, gradient clipping at 1.0 — on the same rows and
starting weights as fthost. Prints one JSON line: tokens/s (after the first 3 steps),
peak allocated device memory and the last loss.
Usage: hf_train.py INIT_DIR ROWS.jsonl full|lora STEPS SEQ BATCH DEVICE"""
import json
import sys
import time

import torch

init, rows_file, mode, steps, seq, batch, device = sys.argv[1:8]
steps, seq, batch = int(steps), int(seq), int(batch)

import peft  # noqa: E402
import transformers  # noqa: E402

EOS = 256
rows = [(list(json.loads(l)["text"].encode()) + [EOS])[:seq] for l in open(rows_file)]
rows = [r for r in rows if len(r) == seq]  # full rows only: no padding on either side
model = transformers.AutoModelForCausalLM.from_pretrained(init, dtype=torch.float32, attn_implementation="sdpa").to(device)
if mode == "lora":
    model = peft.get_peft_model(model, peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                                       target_modules="all-linear", task_type="CAUSAL_LM"))
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0, fused=device.startswith("cuda"))
model.train()
cuda = device.startswith("cuda")
if cuda:
    torch.cuda.reset_peak_memory_stats()
times, loss = [], None
for step in range(steps):
    ids = torch.tensor([rows[(step * batch + i) % len(rows)] for i in range(batch)], device=device)
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    times.append(time.perf_counter() - t0)
timed = times[3:] if len(times) > 3 else times
print(json.dumps({"framework": "hf", "mode": mode, "steps": steps, "tokens_per_s": batch * seq * len(timed) / sum(timed),
                  "peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0, "last_loss": loss.item(),
                  "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                               "peft": peft.__version__}}))
