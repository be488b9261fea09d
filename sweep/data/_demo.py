"""The built-in demo dataset: SYNTHETIC three-class review sentiment, generated from a seed.

Nothing here is real data. Sentences are drawn from a small hand-written grammar of restaurant and
hotel reviews ("honestly , the food was not bad , but the service was extremely slow .") and
labelled by a fixed rule, then a few labels are flipped at random (label noise). The point is a task
that is cheap to train on (~120 distinct words, sentences of ~12 tokens, never over 32) yet hard
enough that learning rate, batch size, epochs and model size of a small GPT-2-shaped model trained
from scratch really change the validation loss. How a review is labelled:

* a clause rates an aspect ("the food was good", "i found the room slightly bland", "i loved the
  view") with a strength: excellent/amazing/great/loved +3, good/nice/liked +2, decent/fine +1,
  okay/average/ordinary 0, mediocre/bland -1, bad/poor/slow/disliked -2, terrible/awful/hated -3;
  intensifiers ("extremely") scale it by 1.5 and downtoners ("slightly") by 0.5;
* negation ("was not", "wasn't", "i did not like") flips the sign and halves the strength, so
  "not bad" is positive, "not great" negative, but "not decent" and "not bland" are neutral;
* a clause is positive at strength >= 0.9, negative at <= -0.9, neutral in between;
* the sentence structure says how clauses combine: "A and B" is positive or negative when they
  agree (or one is neutral) and neutral when they disagree; in "A but B" (also ", however", ", yet",
  ", though") and "although A , B" the second clause decides, in "B , although A" the FIRST one
  does, so "good but slow" and "slow but good" have the same words and opposite labels;
* neutral filler ("we went there on a tuesday .") and openers ("honestly ,") change nothing and
  only move the words that matter around.

Classes are balanced exactly (up to one row) by rejection sampling, then 5% of the labels are
replaced by one of the other two classes, so no model can exceed ~95% accuracy. With 2000 rows a
logistic regression on single words gets 66% of the validation rows right (on word trigrams 79%).
GPT-2 shapes trained from scratch for at most 4 epochs (measured with sweep.training on CPU) range
from chance (val loss 1.10, accuracy 33%: learning rate 1e-4 for 1 epoch, or 1e-2 and above) to
val loss 0.70 / accuracy 73% (nano, 1e-3, batch 16, 4 epochs) and 0.66 / 76% (micro, 5e-4).
"""

from __future__ import annotations

import random

LABELS: tuple[str, str, str] = ("negative", "neutral", "positive")
LABEL_NOISE = 0.05
_THRESHOLD = 0.9
# Longer sentences are redrawn so that, with the demo study's max_length of 32, truncation never
# cuts off the clause that decides the label (BPE learns whole words here; "," and "." are tokens).
_MAX_WORDS = 27

# A small lexicon on purpose: with ~2000 rows every word is seen often enough that what is left
# to learn is how the words combine, which is what separates good training runs from bad ones.
_ASPECTS = (
    "the food", "the service", "the staff", "the price", "the room", "the view", "the coffee",
    "the wine",
)  # fmt: skip

# adjective -> polarity and strength of "<aspect> was <adjective>"
_ADJECTIVES: dict[str, float] = {
    "excellent": 3, "amazing": 3, "great": 3, "good": 2, "lovely": 2, "nice": 2,
    "decent": 1, "fine": 1, "okay": 0, "average": 0, "ordinary": 0, "mediocre": -1, "bland": -1,
    "bad": -2, "poor": -2, "slow": -2, "terrible": -3, "awful": -3, "horrible": -3,
}  # fmt: skip
_POLAR = tuple(a for a, v in _ADJECTIVES.items() if v != 0)
_NEUTRAL_ADJ = tuple(a for a, v in _ADJECTIVES.items() if v == 0)

_INTENSIFIERS = ("very", "really", "extremely", "incredibly", "truly", "absolutely", "so")
_DOWNTONERS = ("somewhat", "a bit", "slightly", "fairly", "rather", "kind of", "a little")

# verb -> strength of "i <verb> <aspect>"; negated: "i did not <base> <aspect>"
_VERBS: dict[str, tuple[str, float]] = {
    "loved": ("love", 3), "adored": ("adore", 3), "liked": ("like", 2), "enjoyed": ("enjoy", 2),
    "appreciated": ("appreciate", 2), "hated": ("hate", -3), "disliked": ("dislike", -2),
    "regretted": ("regret", -2),
}  # fmt: skip

_DAYS = ("monday", "tuesday", "friday", "saturday", "sunday", "rainy evening", "busy night")
_COMPANY = ("my sister", "my parents", "a friend", "two colleagues", "my partner", "the kids")
_FILLERS = (
    "we went there on a {day}",
    "i came with {company}",
    "we had booked a table for eight",
    "it was my first visit",
    "we sat near the window",
    "{company} ordered the special",
    "we stayed for two nights",
    "the place was recommended by {company}",
    "we arrived a little late",
)
_NEGATED = ("{a} was not {j}", "{a} wasn't {j}")
# How often each sentence structure is drawn; see _sentence for what each one means.
# Tuned so that a nano model (2 layers, 64 wide) gets from chance to ~75% within the demo study's
# 4 epochs when its learning rate and batch size are right, and stays near chance when not.
_STRUCTURES = {"single": 0.45, "and": 0.2, "contrast": 0.2, "fronted": 0.075, "trailing": 0.075}
_FILLER_P = 0.2
_NEGATION_P = 0.2
_OPENERS = ("", "", "", "honestly ,", "overall ,")


def _modifier(rng: random.Random) -> tuple[str, float]:
    r = rng.random()
    if r < 0.25:
        return rng.choice(_INTENSIFIERS) + " ", 1.5
    if r < 0.40:
        return rng.choice(_DOWNTONERS) + " ", 0.5
    return "", 1.0


def _polarity(value: float) -> int:
    """A clause counts as positive or negative only when it is clear enough."""
    if value >= _THRESHOLD:
        return 1
    if value <= -_THRESHOLD:
        return -1
    return 0


def _clause(rng: random.Random) -> tuple[str, int]:
    """One opinion clause and its polarity (-1, 0, +1)."""
    aspect = rng.choice(_ASPECTS)
    r = rng.random()
    if r < 0.12:  # a verb of liking or disliking, sometimes negated
        verb, (base, value) = rng.choice(list(_VERBS.items()))
        if rng.random() < 0.35:
            return f"i did not {base} {aspect}", _polarity(-0.5 * value)
        mod = "really " if rng.random() < 0.3 else ""
        return f"i {mod}{verb} {aspect}", _polarity(value)
    adj = rng.choice(_NEUTRAL_ADJ) if r < 0.20 else rng.choice(_POLAR)
    value = _ADJECTIVES[adj]
    if rng.random() < _NEGATION_P:  # negation flips the polarity and halves the strength
        form = rng.choice(_NEGATED)
        return form.format(a=aspect, j=adj), _polarity(-0.5 * value)
    mod, scale = _modifier(rng)
    form = rng.choice(("{a} was {m}{j}", "{a} was {m}{j}", "i found {a} {m}{j}", "{a} is {m}{j}"))
    return form.format(a=aspect, m=mod, j=adj), _polarity(value * scale)


def _filler(rng: random.Random) -> str:
    return rng.choice(_FILLERS).format(day=rng.choice(_DAYS), company=rng.choice(_COMPANY))


def _sentence(rng: random.Random) -> tuple[str, int]:
    """One review and its polarity; the structure decides how clause polarities combine."""
    (a, pa), (b, pb) = _clause(rng), _clause(rng)
    structure = rng.choices(list(_STRUCTURES), weights=list(_STRUCTURES.values()))[0]
    if structure == "single":
        text, pol = a, pa
    elif structure == "and":  # equal weight: agreeing clauses add up, disagreeing ones are mixed
        text, pol = f"{a} and {b}", _sign(pa + pb)
    elif structure == "contrast":  # the clause after the contrast word decides
        joiner = rng.choice(("but", ", but", ", however", ", yet", ", though"))
        text, pol = f"{a} {joiner} {b}", pb
    elif structure == "fronted":  # fronted concession: the second clause decides
        conj = rng.choice(("although", "even though", "while"))
        text, pol = f"{conj} {a} , {b}", pb
    else:  # trailing concession: the FIRST clause decides
        conj = rng.choice(("although", "even though"))
        text, pol = f"{b} , {conj} {a}", pb
    if rng.random() < _FILLER_P:  # a neutral distraction before or after
        text = f"{_filler(rng)} . {text}" if rng.random() < 0.5 else f"{text} . {_filler(rng)}"
    opener = rng.choice(_OPENERS)
    if opener:
        text = f"{opener} {text}"
    return f"{text} .", pol


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def _generate(n: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """n balanced rows (rejection sampling per target class), shuffled, then label noise."""
    targets = [LABELS[i % len(LABELS)] for i in range(n)]
    rng.shuffle(targets)
    texts: list[str] = []
    labels: list[str] = []
    for target in targets:
        while True:
            text, pol = _sentence(rng)
            if LABELS[pol + 1] == target and len(text.split()) <= _MAX_WORDS:
                break
        texts.append(text)
        labels.append(target)
    for i in range(n):
        if rng.random() < LABEL_NOISE:
            labels[i] = rng.choice([lab for lab in LABELS if lab != labels[i]])
    return texts, labels


def demo_dataset(
    n_train: int = 2000, seed: int = 0
) -> tuple[list[str], list[str], list[str], list[str]]:
    """Generate the synthetic demo dataset (see the module docstring for what it is).

    Returns ``(train_texts, train_labels, val_texts, val_labels)`` with string labels
    "negative" / "neutral" / "positive"; the validation split has ``n_train // 4`` rows drawn
    from the same distribution with an independent stream. The same arguments always give the
    same rows, on every machine and Python version (``random.Random`` is specified to be stable).
    """
    if n_train < 3:
        raise ValueError(f"n_train must be at least 3 (one row per class), got {n_train}")
    # Independent streams for the two splits: the validation rows do not depend on the train rows.
    train = _generate(n_train, random.Random(f"sweep-demo-train-{seed}"))
    val = _generate(max(n_train // 4, 3), random.Random(f"sweep-demo-val-{seed}"))
    return train[0], train[1], val[0], val[1]
