#!/usr/bin/env python3
"""The starting point both trainers share: a randomly initialised LlamaForCausalLM of the
given shape over fthost's byte vocabulary (260 ids: bytes, <|endoftext|> 256,
<|im_start|> 257, <|im_end|> 258, <|pad|> 259), saved by transformers (config.json +
model.safetensors) with fthost's stage.json beside it, so `fthost run` starts from it
with init_from and transformers with from_pretrained — the same weights.
Usage: make_init.py OUT_DIR hidden intermediate layers heads kv_heads"""
import json
import pathlib
import sys

import torch
import transformers

out = pathlib.Path(sys.argv[1])
hidden, inter, layers, heads, kv = (int(x) for x in sys.argv[2:7])
config = transformers.LlamaConfig(vocab_size=260, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                                  num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=512,
                                  rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=True,
                                  initializer_range=0.02, bos_token_id=None, eos_token_id=256, pad_token_id=259)
torch.manual_seed(1234)
model = transformers.LlamaForCausalLM(config)
model.save_pretrained(out)
(out / "generation_config.json").unlink(missing_ok=True)
(out / "stage.json").write_text(json.dumps({"format": "fthost-stage-1", "model_plugin": "decoder", "model_config": {
    "vocab_size": 260, "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
    "num_attention_heads": heads, "num_key_value_heads": kv, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
    "tie_word_embeddings": True, "initializer_range": 0.02}}, indent=2) + "\n")
print(f"{out}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
