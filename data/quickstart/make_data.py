#!/usr/bin/env python3
"""Makes the quickstart's bundled data: grocery search queries -> taxonomy category.

Modelled on Instacart's query classification. A fixed seed makes the files identical on
every run; they are committed, so nothing needs Python at run time.

  corpus.jsonl  {"text": ...}                          pre-training text (stage 1, cpt)
  train.jsonl   {"prompt": ..., "completion": ...}     query -> category (stage 2, sft)
  eval.jsonl    the same shape, queries never in train (held out, >= 200 rows)

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

    for name, data in (("corpus", corpus), ("train", train_rows), ("eval", eval_rows)):
        with open(out_dir / f"{name}.jsonl", "w") as f:
            for row in data:
                f.write(json.dumps(row) + "\n")
    print(f"wrote {len(corpus)} corpus, {len(train_rows)} train, {len(eval_rows)} eval rows to {out_dir}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
