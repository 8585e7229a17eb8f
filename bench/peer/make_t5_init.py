#!/usr/bin/env python3
"""The starting point both trainers of bench/t5_peer.sh share: a randomly initialised
T5ForConditionalGeneration of configs/coedit.toml's shape (d_model 128, d_kv 32, 4 heads,
d_ff 256, 2 + 2 layers, 16 relative-attention buckets up to distance 64, gated-GELU, own
LM head without the d_model^-0.5 rescale, no dropout, decoder start 0) over the bundled CoEdIT tokenizer's vocabulary (len(tokenizer) = 511),
saved by transformers (config.json + model.safetensors) with the tokenizer files copied
beside it, so `fthost run` starts from it with init_from (it reads the tokenizer next to
the weights) and transformers with from_pretrained — the same weights.
Usage: make_t5_init.py OUT_DIR [TOKENIZER_DIR]   (default data/coedit/tokenizer)"""
import pathlib
import shutil
import sys

import torch
import transformers

out = pathlib.Path(sys.argv[1])
tok_dir = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "data/coedit/tokenizer")
tok = transformers.T5TokenizerFast.from_pretrained(tok_dir)
config = transformers.T5Config(vocab_size=len(tok), d_model=128, d_kv=32, num_heads=4, d_ff=256, num_layers=2,
                               num_decoder_layers=2, relative_attention_num_buckets=16,
                               relative_attention_max_distance=64, feed_forward_proj="gated-gelu",
                               tie_word_embeddings=False, dropout_rate=0.0, layer_norm_epsilon=1e-6,
                               initializer_factor=1.0, decoder_start_token_id=0, pad_token_id=tok.pad_token_id,
                               eos_token_id=tok.eos_token_id)
torch.manual_seed(1234)
model = transformers.T5ForConditionalGeneration(config)
# transformers 5 forces T5Config.tie_word_embeddings = True (tie_word_embeddings=False only
# turns off the d_model^-0.5 rescale, saved as scale_decoder_outputs = false) and ties
# lm_head to shared. An own head is a checkpoint that stores lm_head.weight with other
# values: from_pretrained then leaves it untied, and fthost's t5 plugin reads an own head
# from the tensor's presence. Initialised as T5's _init_weights does an untied head.
model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.shared.weight).normal_(0.0, config.initializer_factor))
model.save_pretrained(out)
(out / "generation_config.json").unlink(missing_ok=True)
for f in tok_dir.iterdir():
    if f.is_file():
        shutil.copy(f, out / f.name)
check = transformers.T5ForConditionalGeneration.from_pretrained(out)
assert check.lm_head.weight.data_ptr() != check.shared.weight.data_ptr(), "the saved head came back tied"
print(f"{out}: {sum(p.numel() for p in check.parameters()) / 1e6:.2f}M parameters, vocabulary {len(tok)}")
