#!/usr/bin/env python3
"""Makes data/skewed/train.jsonl: a length-skewed text dataset for the packing benchmark
(bench/packing.sh). 90% of the rows are one short grocery sentence (~40 bytes), 10% are
long documents of 20-30 sentences (~1,000 bytes) — the shape of real instruction data,
where a few long answers set the padded length of most batches. Sentences come from
data/quickstart/corpus.jsonl; a fixed seed makes the file identical on every run.
Usage: python3 data/skewed/make_data.py"""
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
sentences = [json.loads(l)["text"] for l in (HERE.parent / "quickstart/corpus.jsonl").read_text().splitlines()]
rng = random.Random(20261129)
rows = []
for _ in range(2000):
    if rng.random() < 0.1:
        rows.append({"text": " ".join(rng.choice(sentences) for _ in range(rng.randint(20, 30)))})
    else:
        rows.append({"text": rng.choice(sentences)})
with open(HERE / "train.jsonl", "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
lengths = sorted(len(r["text"]) for r in rows)
print(f"{len(rows)} rows, bytes: median {lengths[len(rows) // 2]}, mean {sum(lengths) / len(rows):.0f}, max {lengths[-1]}")
