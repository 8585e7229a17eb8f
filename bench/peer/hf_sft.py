#!/usr/bin/env python3
"""The peer side of bench/peer.sh: Hugging Face transformers + PEFT + TRL's SFTTrainer
fine-tuning the same starting model (make_init.py) on the same rows, tokenized with the
same ids fthost's byte tokenizer gives (prompt bytes, completion bytes, <|endoftext|>;
loss on the completion), with the same batch size, sequence limit, optimiser, schedule
(linear warm-up, cosine to 10%), steps and CPU threads. Prints one JSON line: tokens/s
(non-padding tokens of the batches trained on / train_runtime), peak RSS, the mean train
loss of the last 25 steps and the held-out loss.
Usage: hf_sft.py INIT_DIR TRAIN.jsonl EVAL.jsonl full|lora STEPS LR THREADS"""
import json
import resource
import sys

import torch

init, train_file, eval_file, mode, steps, lr, threads = sys.argv[1:8]
steps, lr, threads = int(steps), float(lr), int(threads)
torch.set_num_threads(threads)

import datasets  # noqa: E402
import peft  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from tokenizers import Tokenizer, models  # noqa: E402

EOS, PAD = 256, 259


def rows(path):
    out = []
    for line in open(path):
        r = json.loads(line)
        p, c = list(r["prompt"].encode()), list(r["completion"].encode()) + [EOS]
        out.append({"input_ids": p + c, "completion_mask": [0] * len(p) + [1] * len(c)})
    return datasets.Dataset.from_list(out)


# A tokenizer object for the trainer's padding: the 260 ids by name.
names = {f"<0x{i:02X}>": i for i in range(256)} | {"<|endoftext|>": 256, "<|im_start|>": 257, "<|im_end|>": 258,
                                                    "<|pad|>": 259}
tok = transformers.PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(names, unk_token="<|pad|>")),
                                           eos_token="<|endoftext|>", pad_token="<|pad|>")

model = transformers.AutoModelForCausalLM.from_pretrained(init, dtype=torch.float32)
peft_config = peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                              task_type="CAUSAL_LM") if mode == "lora" else None
args = trl.SFTConfig(output_dir="/tmp/fthost-peer-sft", max_steps=steps, per_device_train_batch_size=8,
                     per_device_eval_batch_size=64, learning_rate=lr, lr_scheduler_type="cosine_with_min_lr",
                     lr_scheduler_kwargs={"min_lr_rate": 0.1}, warmup_steps=max(1, steps // 10), weight_decay=0.0,
                     max_grad_norm=1.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, logging_steps=1,
                     save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0, seed=1234,
                     max_length=128, packing=False, completion_only_loss=True, bf16=False, fp16=False,
                     disable_tqdm=True)
trainer = trl.SFTTrainer(model=model, args=args, train_dataset=rows(train_file), eval_dataset=rows(eval_file),
                         processing_class=tok, peft_config=peft_config)
tokens = 0
collate = trainer.data_collator


def counting(examples):
    global tokens
    batch = collate(examples)
    tokens += sum(len(e["input_ids"]) for e in examples)
    return batch


trainer.data_collator = counting
result = trainer.train()
train_tokens = tokens
losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
ev = trainer.evaluate()
print(json.dumps({"framework": "hf", "mode": mode, "steps": steps, "seconds": result.metrics["train_runtime"],
                  "tokens": train_tokens, "tokens_per_s": train_tokens / result.metrics["train_runtime"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "train_loss_last25": sum(losses[-25:]) / len(losses[-25:]), "eval_loss": ev["eval_loss"],
                  "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                               "peft": peft.__version__, "trl": trl.__version__}}))
