#!/usr/bin/env python3
"""The peer side of bench/real_size_memory.sh: transformers + PEFT (and bitsandbytes'
4-bit load for qlora) on a checkpoint, as their documentation loads it — dtype "auto"
(the stored bf16), LoRA r=16 on all linear layers, AdamW — trained STEPS steps of one
SEQ-token row on the CPU. Peak RSS is read from /proc/self/status (VmHWM) after loading
and again after training, the peak reset in between (/proc/self/clear_refs), as fthost
reports load_peak_rss_mb and train_peak_rss_mb. Prints one JSON line.
Usage: hf_memory.py CHECKPOINT lora|qlora STEPS SEQ ROWS.jsonl"""
import json
import sys
import time


def vm_kib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


ckpt, mode, steps, seq, rows_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

torch.set_num_threads(2)
fixed_mb = vm_kib("VmRSS") / 1024  # the interpreter with torch, transformers and PEFT imported
t0 = time.perf_counter()
kwargs = {"dtype": "auto"}
if mode == "qlora":
    kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32)
model = transformers.AutoModelForCausalLM.from_pretrained(ckpt, **kwargs)
if mode == "qlora":
    model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
model = peft.get_peft_model(model, peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                                   task_type="CAUSAL_LM"))
load_s = time.perf_counter() - t0
load_mb = vm_kib("VmHWM") / 1024
open("/proc/self/clear_refs", "w").write("5")  # VmHWM from here on: the training loop's

tok = transformers.AutoTokenizer.from_pretrained(ckpt)
ids = []
for line in open(rows_file):
    row = json.loads(line)
    ids += tok(row.get("text", "") + row.get("prompt", "") + row.get("completion", ""))["input_ids"]
    if len(ids) >= seq * steps:
        break
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
model.train()
t0 = time.perf_counter()
for step in range(steps):
    x = torch.tensor([ids[step * seq:(step + 1) * seq]])
    loss = model(input_ids=x, labels=x).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
train_s = time.perf_counter() - t0
frozen = [p for p in model.parameters() if not p.requires_grad]
base = sum(p.numel() * p.element_size() for p in frozen)
trainable = sum(p.numel() for p in params)
print(json.dumps({"framework": "transformers+peft" + ("+bnb" if mode == "qlora" else ""), "mode": mode,
                  "load_s": round(load_s, 2), "load_peak_rss_mb": round(load_mb), "train_s": round(train_s, 2),
                  "train_peak_rss_mb": round(vm_kib("VmHWM") / 1024), "fixed_rss_mb": round(fixed_mb),
                  "base_bytes": base, "base_params": sum(p.numel() for p in frozen), "trainable_params": trainable, "last_loss": round(loss.item(), 4)}))
