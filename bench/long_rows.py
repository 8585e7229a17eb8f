"""Rows of one document each, longer than SEQ bytes (truncated to it when trained): no
padding and no packing, so every row is a full sequence. Quickstart sentences in a seeded
order. Used by the GPU scripts (bench/gpu_train.sh, bench/gpu_distributed.sh).

    python3 bench/long_rows.py OUT.jsonl SEQ
"""
import json
import random
import sys

out, seq = sys.argv[1], int(sys.argv[2])
sentences = [json.loads(line)["text"] for line in open("data/quickstart/corpus.jsonl")]
rng = random.Random(7)
with open(out, "w") as f:
    for _ in range(256):
        text = ""
        while len(text.encode()) < seq + 8:
            text += rng.choice(sentences) + " "
        f.write(json.dumps({"text": text}) + "\n")
