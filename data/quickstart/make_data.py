#!/usr/bin/env python3
"""Makes the quickstart's bundled data: grocery search queries -> taxonomy category.

Modelled on Instacart's query classification. A fixed seed makes the files identical on
every run; they are committed, so nothing needs Python at run time.

  corpus.jsonl  {"text": ...}                          pre-training text (stage 1, cpt)
  train.jsonl   {"prompt": ..., "completion": ...}     query -> category (stage 2, sft)
  eval.jsonl    the same shape, queries never in train (held out, >= 200 rows)
  preference_train.jsonl / preference_eval.jsonl
                {"prompt", "chosen", "rejected"}      the train / eval queries with the
                                                      right category chosen and a plausible
                                                      wrong one (a neighbouring aisle) rejected
                                                      (dpo, orpo, simpo)
  feedback_train.jsonl / feedback_eval.jsonl
                {"prompt", "completion", "label"}    thumbs up / down: the right category
                                                      (true) or a plausible wrong one (false)
                                                      (kto)
  chat_train.jsonl / chat_eval.jsonl
                {"messages": [system, user, assistant]}  the train / eval queries as
                                                      conversations, for chat checkpoints
                                                      (configs/finetune_checkpoint.toml)

Usage: python3 data/quickstart/make_data.py [OUT_DIR]
"""
import json
import random
import sys
from pathlib import Path

SEED = 20261128

CATEGORIES = {
    "produce": ["apples", "bananas", "spinach", "carrots", "avocados", "lemons", "tomatoes", "onions"],
    "dairy": ["milk", "yogurt", "butter", "cheddar", "cream cheese", "sour cream", "eggs", "kefir"],
    "bakery": ["bagels", "sourdough", "croissants", "muffins", "tortillas", "baguette", "donuts", "rolls"],
    "meat": ["chicken breast", "ground beef", "bacon", "pork chops", "turkey", "sausage", "steak", "ham"],
    "seafood": ["salmon", "shrimp", "tuna steak", "cod", "scallops", "crab", "tilapia", "lobster"],
    "frozen": ["ice cream", "frozen pizza", "frozen peas", "waffles", "popsicles", "frozen fries", "dumplings", "frozen berries"],
    "beverages": ["coffee", "green tea", "orange juice", "sparkling water", "cola", "lemonade", "kombucha", "energy drink"],
    "snacks": ["potato chips", "pretzels", "popcorn", "granola bars", "crackers", "trail mix", "cookies", "salsa"],
    "pantry": ["rice", "pasta", "olive oil", "flour", "peanut butter", "canned beans", "cereal", "honey"],
    "household": ["paper towels", "dish soap", "laundry detergent", "trash bags", "sponges", "toilet paper", "bleach", "foil"],
}
BRANDS = ["", "", "acme", "green farm", "kirkland", "great value", "trader", "store brand", "happy valley", "sunrise"]
ADJECTIVES = ["", "", "organic", "fresh", "large", "family size", "low fat", "natural", "premium", "best", "cheap", "local"]
SIZES = ["", "", "1 lb", "2 pack", "12 oz", "32 oz", "1 gallon", "6 count", "family pack", "5 lb", "near me", "on sale"]

# The wrong answers a shopper (or a half-trained model) plausibly gives: neighbouring aisles.
CONFUSABLE = {
    "produce": ["frozen", "pantry"],
    "dairy": ["frozen", "beverages"],
    "bakery": ["pantry", "snacks"],
    "meat": ["seafood", "frozen"],
    "seafood": ["meat", "frozen"],
    "frozen": ["dairy", "snacks"],
    "beverages": ["dairy", "snacks"],
    "snacks": ["pantry", "bakery"],
    "pantry": ["snacks", "bakery"],
    "household": ["pantry", "snacks"],
}

CORPUS_TEMPLATES = [
    "{p} are found in the {c} aisle.",
    "you can buy {p} in the {c} section of the store.",
    "the {c} department sells {p}.",
    "{p} belong to the {c} category.",
    "shoppers looking for {p} should go to {c}.",
    "we keep {p} with the rest of the {c} items.",
    "in a grocery store, {p} are {c}.",
]


def make_query(rng, product):
    parts = [rng.choice(BRANDS), rng.choice(ADJECTIVES), product, rng.choice(SIZES)]
    return " ".join(p for p in parts if p)


def main(out_dir: Path) -> None:
    rng = random.Random(SEED)
    out_dir.mkdir(parents=True, exist_ok=True)
    products = [(p, c) for c, ps in CATEGORIES.items() for p in ps]

    corpus = []
    for _ in range(3000):
        p, c = rng.choice(products)
        corpus.append({"text": rng.choice(CORPUS_TEMPLATES).format(p=p, c=c)})

    # Distinct queries; eval takes queries that never appear in train.
    seen, rows = set(), []
    while len(rows) < 2600:
        p, c = rng.choice(products)
        q = make_query(rng, p)
        if q in seen:
            continue
        seen.add(q)
        rows.append({"prompt": f"query: {q}\ncategory:", "completion": f" {c}"})
    rng.shuffle(rows)
    eval_rows, train_rows = rows[:300], rows[300:]
    assert not {r["prompt"] for r in eval_rows} & {r["prompt"] for r in train_rows}

    # Preference and feedback rows over the same queries, from their own stream so the
    # files above stay as they were.
    prng = random.Random(SEED + 1)

    def pair(row):
        right = row["completion"].strip()
        return {"prompt": row["prompt"], "chosen": f" {right}", "rejected": f" {prng.choice(CONFUSABLE[right])}"}

    def feedback(row):
        right = row["completion"].strip()
        good = prng.random() < 0.5
        answer = right if good else prng.choice(CONFUSABLE[right])
        return {"prompt": row["prompt"], "completion": f" {answer}", "label": good}

    def chat(row):
        query = row["prompt"].removeprefix("query: ").removesuffix("\ncategory:")
        return {"messages": [{"role": "system", "content": "Name the grocery aisle of the search query."},
                             {"role": "user", "content": query},
                             {"role": "assistant", "content": row["completion"].strip()}]}

    files = {
        "corpus": corpus, "train": train_rows, "eval": eval_rows,
        "preference_train": [pair(r) for r in train_rows], "preference_eval": [pair(r) for r in eval_rows],
        "feedback_train": [feedback(r) for r in train_rows], "feedback_eval": [feedback(r) for r in eval_rows],
        "chat_train": [chat(r) for r in train_rows], "chat_eval": [chat(r) for r in eval_rows],
    }
    for name, data in files.items():
        with open(out_dir / f"{name}.jsonl", "w") as f:
            for row in data:
                f.write(json.dumps(row) + "\n")
    print(", ".join(f"{len(d)} {n}" for n, d in files.items()), f"rows written to {out_dir}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
