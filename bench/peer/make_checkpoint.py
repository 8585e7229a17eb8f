#!/usr/bin/env python3
"""A random Qwen2-shaped checkpoint at a real size, as a user's Hugging Face download
looks: config.json + bf16 safetensors shards + model.safetensors.index.json, saved by
transformers. Nothing is trained; the weights only need the right shapes and dtypes for
memory and load-time measurements (bench/real_size_memory.sh).
Usage: make_checkpoint.py OUT_DIR hidden intermediate layers heads kv_heads vocab [SHARD]"""
import sys

import torch
import transformers

out = sys.argv[1]
hidden, inter, layers, heads, kv, vocab = (int(x) for x in sys.argv[2:8])
shard = sys.argv[8] if len(sys.argv) > 8 else "500MB"
config = transformers.Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                                  num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                                  max_position_embeddings=4096, tie_word_embeddings=True, rms_norm_eps=1e-6,
                                  rope_theta=1000000.0, dtype="bfloat16", eos_token_id=256, pad_token_id=259)
torch.manual_seed(0)
model = transformers.Qwen2ForCausalLM(config).to(torch.bfloat16)
model.save_pretrained(out, max_shard_size=shard)
print(f"{out}: {sum(p.numel() for p in model.parameters()) / 1e9:.3f}B parameters in bf16")
