#!/usr/bin/env python3
"""Makes a small CoEdIT-style text-editing dataset (after Grammarly's CoEdIT: an
instruction, then the text to edit) from a template grammar and a fixed seed.

Every row is an instruction and a sentence; the completion is the sentence edited by a
deterministic transform a tiny encoder-decoder can learn:

  gec             "Fix the grammar:"          1-2 injected errors (subject-verb agreement,
                                              a/an, verb tense against the time adverb, a
                                              doubled word) -> the correct sentence
  paraphrase      "Paraphrase this:"          fixed synonyms (fix -> repair, movie -> film,
                                              ...) and a trailing clause moved to the front
  simplification  "Simplify:"                 complex words -> simple ones (purchase -> buy,
                                              ...) and the subordinate clause dropped
  coherence       "Make this text coherent:"  two sentences about one subject -> one, joined
                                              by so / but / and then, the repeated subject
                                              a pronoun
  formality       "Write this more formally:" contractions expanded, informal words
                                              replaced (kids -> children, gonna -> going to)

  train.jsonl   {"prompt": "<instruction> <sentence>", "completion": ..., "task": ...}
                800 rows per task, shuffled
  eval.jsonl    the same, 60 rows per task; no eval sentence (source or edit) appears
                anywhere in train.jsonl or corpus.jsonl
  corpus.jsonl  {"text": ...} plain sentences for span-corruption pre-training: train
                edits, train sources (not the ungrammatical gec ones), and fresh
                sentences from the same grammar; none from eval

Standard library only; the same files on every run (checked by writing twice).
Usage: python3 data/coedit/make_data.py [OUT_DIR]
"""
import json
import random
import sys
from pathlib import Path

SEED = 20261201
TRAIN_PER_TASK, EVAL_PER_TASK, CORPUS_ROWS = 800, 60, 6000
MIN_WORDS, MAX_WORDS = 6, 14

INSTRUCTIONS = {
    "gec": "Fix the grammar:",
    "paraphrase": "Paraphrase this:",
    "simplification": "Simplify:",
    "coherence": "Make this text coherent:",
    "formality": "Write this more formally:",
}

# ---- the lexicon ---------------------------------------------------------------------------

SINGULAR = ["the teacher", "the doctor", "the farmer", "the student", "the driver", "the manager", "the baker",
            "the nurse", "the pilot", "the writer", "the artist", "the engineer", "my brother", "my sister",
            "our neighbor", "the old man", "the young woman", "Anna", "Tom", "Maria", "David", "Lisa", "Peter"]
PLURAL = ["the teachers", "the students", "the children", "the farmers", "the workers", "the nurses",
          "the engineers", "my parents", "our neighbors", "the drivers", "the artists", "the doctors"]

# (base, third person singular, past, objects); every object starts with its right article.
VERBS = [
    ("clean", "cleans", "cleaned", ["the kitchen", "the office", "an old table", "the windows", "a small room", "the garage"]),
    ("fix", "fixes", "fixed", ["a broken chair", "an old clock", "the car", "the door", "a small radio", "the roof"]),
    ("paint", "paints", "painted", ["a picture", "the fence", "an old wall", "the kitchen", "a small boat"]),
    ("visit", "visits", "visited", ["a museum", "an old friend", "the market", "the hospital", "a small town", "an island"]),
    ("watch", "watches", "watched", ["a movie", "the game", "an old movie", "the news", "a funny show"]),
    ("cook", "cooks", "cooked", ["a meal", "an omelet", "the dinner", "a hot soup", "a big cake"]),
    ("carry", "carries", "carried", ["a heavy box", "an empty bag", "the boxes", "a big basket"]),
    ("find", "finds", "found", ["a key", "an old coin", "the map", "a wallet", "an umbrella"]),
    ("study", "studies", "studied", ["the report", "an article", "a new book", "the map", "the plan"]),
    ("write", "writes", "wrote", ["a letter", "an email", "a report", "a short story", "a poem"]),
    ("open", "opens", "opened", ["a window", "the door", "a new shop", "an account"]),
    ("buy", "buys", "bought", ["an apple", "a bike", "a new car", "an old map", "a ticket", "a gift"]),
    ("help", "helps", "helped", ["an old woman", "the children", "a new student", "the neighbors"]),
    ("build", "builds", "built", ["a house", "a bridge", "a small shed", "a wall"]),
    ("need", "needs", "needed", ["a new computer", "an extra chair", "a ladder", "a big table"]),
    ("use", "uses", "used", ["a ladder", "an old computer", "the map", "a small knife"]),
    ("show", "shows", "showed", ["the photos", "a new plan", "an old map", "the picture"]),
    ("start", "starts", "started", ["a new job", "the meeting", "a small business", "the car"]),
    ("get", "gets", "got", ["a letter", "a new phone", "an invitation", "a ticket"]),
]
PLACES = ["in the park", "at the station", "near the river", "in the city", "at home", "with a friend",
          "after lunch", "before dinner", "at the market", "in the garden"]
# Time adverbs fix the tense: (words, tense, may stand at the end).
ADVERBS = [("every morning", "present", True), ("every day", "present", True), ("on weekends", "present", True),
           ("usually", "present", False), ("often", "present", False),
           ("yesterday", "past", True), ("last week", "past", True), ("last night", "past", True),
           ("two days ago", "past", True), ("last summer", "past", True)]
CLAUSE_SUBJECTS = ["the weather", "the room", "the road", "the shop", "the house", "the water", "the city", "the office"]
CLAUSE_ADJECTIVES = ["cold", "warm", "quiet", "busy", "dark", "wet", "clean", "small"]
CONNECTIVES = ["because", "although", "when"]

# paraphrase: word -> synonym (an a/an before either fits both).
SYNONYMS = {"fix": "repair", "fixes": "repairs", "fixed": "repaired", "find": "discover", "finds": "discovers",
            "found": "discovered", "movie": "film", "shop": "store", "road": "street", "big": "large",
            "small": "little", "quiet": "calm", "usually": "normally", "picture": "painting", "gift": "present"}
# simplification: simple verb (every form) / word -> the complex one its sources use.
COMPLEX_VERBS = {"buy": ("purchase", "purchases", "purchased"), "help": ("assist", "assists", "assisted"),
                 "build": ("construct", "constructs", "constructed"), "start": ("commence", "commences", "commenced"),
                 "use": ("utilize", "utilizes", "utilized"), "show": ("demonstrate", "demonstrates", "demonstrated"),
                 "need": ("require", "requires", "required"), "get": ("obtain", "obtains", "obtained")}
COMPLEX_WORDS = {"doctor": "physician", "doctors": "physicians", "house": "residence", "big": "substantial",
                 "often": "frequently"}
COMPLEX_CONNECTIVES = ["although", "because", "since"]

# coherence: a state with reactions that follow from it (so) or despite it (but ... still),
# and actions that follow one another (and then).
STATES = {
    "tired": (["went to bed early", "took a short nap"], "still finished the work"),
    "hungry": (["made a sandwich", "ordered a pizza"], "still skipped lunch"),
    "cold": (["closed the window", "wore a warm coat"], "still went swimming"),
    "bored": (["called a friend", "read a book"], "still stayed at home"),
    "late": (["took a taxi", "ran to the station"], "still missed the train"),
    "sick": (["visited the doctor", "stayed in bed"], "still went to work"),
    "thirsty": (["drank some water", "bought a cold drink"], "still waited for dinner"),
}
STATE_CONTEXTS = ["after the long trip", "after work", "in the evening", "this morning", "after the meeting"]
FIRST_ACTIONS = ["finished the homework", "cleaned the kitchen", "ate breakfast", "washed the car",
                 "fed the dog", "paid the bills"]
NEXT_ACTIONS = ["watched a movie", "went to the park", "called a friend", "read the newspaper",
                "took a walk", "played the piano"]
COHERENCE_SUBJECTS = [("Anna", "she"), ("Maria", "she"), ("Lisa", "she"), ("Emma", "she"), ("my sister", "she"),
                      ("Tom", "he"), ("David", "he"), ("Peter", "he"), ("James", "he"), ("my brother", "he"),
                      ("the children", "they"), ("my parents", "they"), ("the workers", "they"),
                      ("our neighbors", "they"), ("the students", "they")]

# formality: formal phrase -> informal phrase, applied longest first.
INFORMAL = [("police officers", "cops"), ("going to", "gonna"), ("want to", "wanna"), ("do not", "don't"),
            ("does not", "doesn't"), ("did not", "didn't"), ("will not", "won't"), ("is not", "isn't"),
            ("are not", "aren't"), ("It is", "It's"), ("We are", "We're"), ("They are", "They're"),
            ("I am", "I'm"), ("cannot", "can't"), ("many", "a lot of"), ("children", "kids"), ("friends", "buddies"),
            ("friend", "buddy"), ("very", "really"), ("excellent", "awesome"), ("things", "stuff")]
FORMAL_OBJECTS = {
    "visit": ["many museums", "a friend", "many friends", "the new office", "the children"],
    "watch": ["an excellent movie", "the children", "many movies"],
    "meet": ["a friend", "the police officers", "many friends", "the children"],
    "call": ["a friend", "the police officers", "the children"],
    "find": ["many things", "an excellent book", "an old car"],
    "help": ["the children", "a friend", "the police officers"],
    "see": ["an excellent movie", "many museums", "the police officers"],
    "buy": ["many things", "an old car", "an excellent book"],
}
FORMAL_VERBS = sorted(FORMAL_OBJECTS)
FORMAL_TAILS = ["", "", "today", "this week", "after school", "at the weekend"]
FORMAL_ADJECTIVES = ["cold", "warm", "busy", "quiet", "late", "expensive"]
FORMAL_PLACES = ["in the office", "in the city", "at the station", "in the kitchen", "outside"]
FORMAL_NPS_SG = ["the shop", "the office", "the museum", "the station", "the new phone", "this book"]
FORMAL_NPS_PL = ["the shops", "the museums", "the children", "my friends", "the police officers", "the roads"]

# ---- sentences --------------------------------------------------------------------------


def render(words):
    """Words (with "," and "." as their own items) -> a sentence: first letter up, punctuation attached."""
    text = " ".join(words).replace(" ,", ",").replace(" .", ".")
    return text[0].upper() + text[1:]


def word_count(sentence):
    return len([w for w in sentence.replace(",", " ").replace(".", " ").split() if w])


def split(phrase):
    return phrase.split() if phrase else []


class Action:
    """An action sentence: [adverb ,] subject verb object [place] [adverb] [connective clause] ."""

    def __init__(self, rng, clause_prob=0.35, adverb_front=None, verbs=VERBS):
        self.plural = rng.random() < 0.35
        self.subject = rng.choice(PLURAL if self.plural else SINGULAR)
        self.verb = rng.choice(verbs)
        self.object = rng.choice(self.verb[3])
        self.place = rng.choice(PLACES) if rng.random() < 0.45 else ""
        self.adverb = rng.choice(ADVERBS) if rng.random() < 0.6 else None
        self.front = False
        if self.adverb:
            self.front = (not self.adverb[2]) or (rng.random() < 0.5 if adverb_front is None else adverb_front)
        self.tense = self.adverb[1] if self.adverb else rng.choice(["present", "past"])
        self.clause = None
        if rng.random() < clause_prob:
            self.clause = (rng.choice(CONNECTIVES), rng.choice(CLAUSE_SUBJECTS), rng.choice(CLAUSE_ADJECTIVES))

    def verb_form(self, tense, plural):
        base, third, past, _ = self.verb
        if tense == "past":
            return past
        return base if plural else third

    def words(self, verb=None, clause=True, connective=None):
        """The sentence's words; `verb` overrides the verb form, clause=False drops the clause."""
        w = []
        if self.adverb and self.front:
            w += split(self.adverb[0]) + [","]
        w += split(self.subject) + [verb or self.verb_form(self.tense, self.plural)] + split(self.object)
        w += split(self.place)
        if self.adverb and not self.front:
            w += split(self.adverb[0])
        if clause and self.clause:
            w += self.clause_words(connective)
        return w + ["."]

    def clause_words(self, connective=None):
        conn, subj, adj = self.clause
        return [connective or conn] + split(subj) + ["was" if self.tense == "past" else "is", adj]

    def text(self):
        return render(self.words())


def fits(*sentences):
    return all(MIN_WORDS <= word_count(s) <= MAX_WORDS for s in sentences)


# ---- the tasks: each returns (source, target) or None when this draw does not fit ------------------


def make_gec(rng):
    s = Action(rng)
    target = s.text()
    kinds = ["article", "double"]
    if s.tense == "present":
        kinds.append("agreement")
    if s.adverb:
        kinds.append("tense")
    words = s.words()
    if not any(w in ("a", "an") for w in words):
        kinds.remove("article")
    n = 1 if rng.random() < 0.55 else 2
    chosen = rng.sample(kinds, min(n, len(kinds)))
    if "agreement" in chosen and "tense" in chosen:  # both would change the verb
        chosen.remove("tense")
    verb = None
    if "agreement" in chosen:
        verb = s.verb_form("present", not s.plural)
    if "tense" in chosen:
        verb = s.verb_form("present", s.plural) if s.tense == "past" else s.verb_form("past", s.plural)
    if verb == s.verb_form(s.tense, s.plural):  # study/read-like forms that do not change
        return None
    words = s.words(verb=verb)
    if "article" in chosen:
        at = rng.choice([i for i, w in enumerate(words) if w in ("a", "an")])
        words[at] = "an" if words[at] == "a" else "a"
    if "double" in chosen:
        at = rng.choice([i for i, w in enumerate(words) if i > 0 and w not in (",", ".")])
        words.insert(at + 1, words[at])
    source = render(words)
    if source == target or not fits(source, target):
        return None
    return source, target


def make_paraphrase(rng):
    s = Action(rng, clause_prob=0.6, adverb_front=False)
    source = s.text()
    if s.clause and not s.front:
        main = s.words(clause=False)[:-1]
        if main[0] not in ("Anna", "Tom", "Maria", "David", "Lisa", "Peter"):
            main[0] = main[0].lower()
        words = s.clause_words() + [","] + main + ["."]
    else:
        words = s.words()
    words = [SYNONYMS.get(w, w) for w in words]
    target = render(words)
    if source == target or not fits(source, target):
        return None
    return source, target


def make_simplification(rng):
    s = Action(rng, clause_prob=1.0)
    s.clause = (rng.choice(COMPLEX_CONNECTIVES),) + s.clause[1:]
    simple = s.words(clause=False)
    target = render(simple)
    # The complex sentence: the verb's complex form, complex words in the main clause, and
    # the subordinate clause the simple one drops.
    simple_verb = s.verb_form(s.tense, s.plural)
    verb = simple_verb
    if s.verb[0] in COMPLEX_VERBS:
        forms = COMPLEX_VERBS[s.verb[0]]
        verb = forms[2] if s.tense == "past" else forms[0] if s.plural else forms[1]
    main = [verb if w == simple_verb else COMPLEX_WORDS.get(w, w) for w in s.words(clause=False)[:-1]]
    if main == simple[:-1]:  # nothing complex to simplify
        return None
    source = render(main + s.clause_words() + ["."])
    if not fits(source, target):
        return None
    return source, target


def make_coherence(rng):
    subject, pronoun = rng.choice(COHERENCE_SUBJECTS)
    plural = pronoun == "they"
    if rng.random() < 0.62:
        state = rng.choice(sorted(STATES))
        follows, despite = STATES[state]
        first = split(subject) + ["were" if plural else "was", state] + split(rng.choice(STATE_CONTEXTS))
        if rng.random() < 0.6:
            then, link = rng.choice(follows), "so"
        else:
            then, link = despite, "but"
    else:
        first = split(subject) + split(rng.choice(FIRST_ACTIONS))
        then, link = rng.choice(NEXT_ACTIONS), "and then"
    s1 = render(first + ["."])
    s2 = render(split(subject) + split(then) + ["."])
    target = render(first + [","] + split(link) + [pronoun] + split(then) + ["."])
    if not fits(target) or word_count(s1) < 3:
        return None
    return s1 + " " + s2, target


def informal(sentence):
    words = sentence[:-1].split()  # the final "."
    out, i = [], 0
    while i < len(words):
        for formal, casual in INFORMAL:
            f = formal.split()
            if words[i:i + len(f)] == f:
                out += casual.split()
                i += len(f)
                break
        else:
            out.append(words[i])
            i += 1
    return " ".join(out) + "."


def make_formality(rng):
    kind = rng.randrange(5)
    tail = split(rng.choice(FORMAL_TAILS))
    if kind == 0:  # negation
        plural = rng.random() < 0.4
        subject = split(rng.choice(PLURAL if plural else SINGULAR))
        aux, time = rng.choice([("does not" if not plural else "do not", tail), ("did not", ["yesterday"]),
                                ("cannot", tail), ("will not", ["tomorrow"])])
        verb = rng.choice(FORMAL_VERBS)
        words = subject + split(aux) + [verb] + split(rng.choice(FORMAL_OBJECTS[verb])) + time
    elif kind == 1:  # going to
        verb = rng.choice(FORMAL_VERBS)
        words = split(rng.choice(["We are", "They are", "I am"])) + ["going", "to", verb]
        words += split(rng.choice(FORMAL_OBJECTS[verb])) + tail
    elif kind == 2:  # want to
        subject = split(rng.choice(["We", "They", "I"] + PLURAL))
        verb = rng.choice(FORMAL_VERBS)
        words = subject + ["want", "to", verb] + split(rng.choice(FORMAL_OBJECTS[verb])) + tail
    elif kind == 3:  # it is very ...
        words = ["It", "is", "very", rng.choice(FORMAL_ADJECTIVES)] + split(rng.choice(FORMAL_PLACES))
        words += split(rng.choice(["today", "this morning", "tonight", "again"]))
    else:  # is not / are not
        if rng.random() < 0.5:
            words = split(rng.choice(FORMAL_NPS_SG)) + ["is", "not"]
        else:
            words = split(rng.choice(FORMAL_NPS_PL)) + ["are", "not"]
        words += [rng.choice(FORMAL_ADJECTIVES)] + split(rng.choice(["today", "at night", "this week", "again"]))
        if rng.random() < 0.5:
            words += ["and", "that", "is", "very", rng.choice(["annoying", "strange", "good", "bad"])]
    target = render(words + ["."])
    source = informal(target)
    if source == target or not fits(source, target):
        return None
    return source, target


TASKS = {"gec": make_gec, "paraphrase": make_paraphrase, "simplification": make_simplification,
         "coherence": make_coherence, "formality": make_formality}


def draw(rng, task, count, taken, forbidden):
    """`count` rows of `task` whose source is not in `taken` and whose sentences are not in `forbidden`."""
    rows, tries = [], 0
    while len(rows) < count:
        tries += 1
        if tries > 200 * count:
            raise SystemExit(f"{task}: cannot draw {count} distinct rows")
        pair = TASKS[task](rng)
        if pair is None:
            continue
        source, target = pair
        if source in taken or source in forbidden or target in forbidden:
            continue
        taken.add(source)
        rows.append({"prompt": INSTRUCTIONS[task] + " " + source, "completion": target, "task": task})
    return rows


def source_of(row):
    return row["prompt"][len(INSTRUCTIONS[row["task"]]) + 1:]


def fresh_sentence(rng):
    pick = rng.random()
    if pick < 0.5:
        text = Action(rng).text()
        return text if fits(text) else None
    if pick < 0.7:
        return make_coherence(rng)
    if pick < 0.85:
        return make_formality(rng)
    return make_simplification(rng)


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)

    # Eval first; its sentences are then kept out of train and the corpus.
    eval_rows, taken = [], set()
    for task in TASKS:
        eval_rows += draw(rng, task, EVAL_PER_TASK, taken, set())
    held_out = set()
    for row in eval_rows:
        held_out.update([source_of(row), row["completion"]])
        if row["task"] == "coherence":
            held_out.update(s.strip() + "." for s in source_of(row).split(".") if s.strip())
    # Coherence component sentences repeat across rows by design (a state and its
    # reaction); only whole eval sources and edits are held out.
    held_out_whole = {source_of(r) for r in eval_rows} | {r["completion"] for r in eval_rows}

    train_rows, taken = [], set()
    for task in TASKS:
        train_rows += draw(rng, task, TRAIN_PER_TASK, taken, held_out_whole)
    rng.shuffle(train_rows)
    rng.shuffle(eval_rows)

    # The corpus: train edits, non-gec train sources (gec sources carry the errors), fresh sentences.
    edits = sorted({r["completion"] for r in train_rows})
    sources = sorted({source_of(r) for r in train_rows if r["task"] != "gec"} - set(edits))
    corpus = rng.sample(edits, 2500) + rng.sample(sources, 1500)
    seen = set(corpus)
    while len(corpus) < CORPUS_ROWS:
        s = fresh_sentence(rng)
        if s is None:
            continue
        s = s if isinstance(s, str) else (s[0] if rng.random() < 0.5 else s[1])
        if s in seen or s in held_out_whole:
            continue
        seen.add(s)
        corpus.append(s)
    rng.shuffle(corpus)

    # The promises above, checked.
    train_sentences = {source_of(r) for r in train_rows} | {r["completion"] for r in train_rows}
    for row in eval_rows:
        for s in (source_of(row), row["completion"]):
            assert s not in train_sentences and s not in seen, s
    assert len({source_of(r) for r in train_rows}) == len(train_rows)
    assert len({source_of(r) for r in eval_rows}) == len(eval_rows)

    def write(name, rows):
        with open(out / name, "w", encoding="utf-8", newline="\n") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    write("train.jsonl", train_rows)
    write("eval.jsonl", eval_rows)
    write("corpus.jsonl", [{"text": t} for t in corpus])
    print(f"{out}: train {len(train_rows)}, eval {len(eval_rows)}, corpus {len(corpus)} rows")


if __name__ == "__main__":
    main()
