"""What a word is, for labels and search (no torch): a token's concept key, the leading pieces a tokenizer
cuts words into, how common a word is, and how a token is shown.

**Concept key.** A token's normal form: leading whitespace and tokenizer space markers stripped, case folded,
punctuation at its edges dropped, simple English plurals and inflections folded ("Dogs", " dog", "DOG",
"dogs" -> "dog"; "puppies" -> "puppy"; "boxes" -> "box"; "walked", "walking" -> "walk"). Special tokens
(``<|endoftext|>``, ``<s>``, ``[PAD]`` …) and tokens with no letters or digits have the empty key and never
label a neuron.

**Leading pieces.** BPE vocabularies hold the first pieces of words they split (" Californ" of
"Californian", " earthqu" of "earthquakes"). A key P is a *leading piece* of the vocabulary word W when
(the rule, all of it):
  1. P has at least ``PIECE_MIN_LETTERS`` (4) letters, all letters, and W starts with P (W != P);
  2. P spells at least half of W's letters (2 * len(P) >= len(W));
  3. P is at least ten times rarer than W as a word of its own (English word frequency, ``PIECE_RARER``
     = 1 on the Zipf scale), so a real word is never swallowed by a longer one ("earth" stays "earth",
     not "earthquake"; "Calif" (Zipf 3.8) and "Californ" (1.4) join "california" (5.0)).
A piece belongs to the most common word it leads (ties: the shorter, then the alphabetically first), and
labels and search treat it as that word: " Californ", " Calif" and " California" make one concept
"california".

**Word frequency** is wordfreq's English list on the Zipf scale (log10 of occurrences per billion words:
"the" 7.7, "dog" 5.1, "hyssop" 2.0; 0 for what no English text uses). It is looked up once, when a
cache's vocabulary is written, and stored there.

**Specificity** (what ``top`` ranks content by, with the label's mass): 0 for the empty key, a single
character, or a key with no letters (numbers); ``NON_WORD`` (0.25) for a key no English text uses (a
fragment, a name, code) ; else ``clip((7 - zipf) / 3, 0, 1)``: 0 for "the" (7.7), "of", "and", 0.1 for "all"
(6.7), 0.63 for "dog" (5.1), 1 for words rarer than Zipf 4. Function words are the most frequent words of
a language, so they rank last, without a stop list.
"""

from __future__ import annotations

import math
import re
import unicodedata
from bisect import bisect_left

import numpy as np

SPACE_MARKERS = " \t\n\r\u0120\u2581\u010a"  # whitespace, GPT-2 'Ġ', SentencePiece '▁', GPT-2 'Ċ'
PIECE_MIN_LETTERS = 4
PIECE_RARER = 1.0  # Zipf units: 10x rarer
NON_WORD = 0.25
SHORT_WORD_ZIPF = {2: 4.5, 3: 4.0}  # a 2- or 3-letter key rarer than this is a fragment ("ing", "ic"), not a word
COMMON_ZIPF, RARE_ZIPF = 7.0, 4.0

# English function words: a closed class (pronouns, determiners, prepositions, conjunctions, auxiliaries and
# modals, their contraction pieces, common adverbial particles). Frequency alone ranks most of them last;
# this list catches the rarer ones ("oneself", "thereof", "whereby") that frequency would rank as content.
FUNCTION_WORDS = frozenset(
    """
a about above across after afterwards again against albeit all almost alone along already also although always
am among amongst an and another any anybody anyone anything anyway anywhere are aren around as at be became
because become becomes been before beforehand behind being below beneath beside besides between beyond both
but by can cannot could couldn did didn do does doesn doing don done down during each either else elsewhere
enough etc even ever every everybody everyone everything everywhere except few for former formerly from further
furthermore had hadn has hasn have haven having he hence her here hereafter hereby herein hers herself him
himself his how however i if in inasmuch indeed inside insofar instead into is isn it its itself just least
less lest like many may me meanwhile might mightn mine more moreover most mostly much must mustn my myself
namely neither never nevertheless next no nobody none noone nor not nothing now nowhere of off often on once
one oneself only onto or other others otherwise ought our ours ourselves out outside over own per perhaps
quite rather same shall shan she should shouldn since so some somebody someone something sometime sometimes
somewhat somewhere such than that the their theirs them themselves then thence there thereafter thereby
therefore therein thereof thereupon these they this those though through throughout thru thus till to
together too toward towards under underneath unless unlike until up upon us very via was wasn we were weren
what whatever when whence whenever where whereafter whereas whereby wherein whereupon wherever whether which
whichever while whilst whither who whoever whole whom whomever whose why will with within without won would
wouldn yet you your yours yourself yourselves
""".split()
)
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")
_SPECIAL = re.compile(r"^(<\|[^<>]*\|>|</?[A-Za-z_][\w.\-]*>|\[(CLS|SEP|PAD|MASK|UNK)\])$")
_VOWELS = set("aeiou")


def normalize(text: str) -> str:
    """The form `word`-style comparisons use: leading whitespace/space markers stripped, case folded."""
    return text.lstrip(SPACE_MARKERS).casefold()


def is_special(text: str) -> bool:
    return bool(_SPECIAL.match(text.strip()))


def surface(text: str) -> str:
    """A token's word before folding: space markers and edge punctuation stripped, case folded, "'s" dropped;
    "" for special tokens and tokens with no letters or digits."""
    if is_special(text):
        return ""
    word = _EDGE.sub("", text.lstrip(SPACE_MARKERS).casefold())
    return word[:-2] if word.endswith(("'s", "’s")) else word


def concept_key(text: str) -> str:
    """The normal form labels group tokens by (see the module's docstring); "" for a token with no letters
    or digits, and for special tokens."""
    return fold(surface(text))


def fold(word: str) -> str:
    """Simple English plurals and inflections folded (a word already through ``surface``)."""
    if not word.isalpha() or len(word) < 3:
        return word
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    for ending in ("ing", "ed"):
        stem = word[: -len(ending)]
        if word.endswith(ending) and len(stem) >= 3 and any(c in _VOWELS for c in stem):
            if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
                stem = stem[:-1]  # running -> run, stopped -> stop
            return stem
    return word


_FREQ: dict[str, float] | None = None


def zipf(words) -> np.ndarray:
    """English word frequency of each word on the Zipf scale (0 where no English text uses it)."""
    global _FREQ
    if _FREQ is None:
        from wordfreq import get_frequency_dict

        _FREQ = get_frequency_dict("en", wordlist="best")
    out = np.zeros(len(words), np.float32)
    for i, w in enumerate(words):
        f = _FREQ.get(w) if w else None
        if f:
            out[i] = max(0.0, math.log10(f) + 9.0)
    return out


def vocabulary_keys(texts: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(distinct keys, key id of every token, each key's Zipf frequency); the empty key is id 0. A fold is
    kept only where its stem is a word about as common as the token's word ("dogs" -> "dog", but
    "themselves" stays "themselves" and "living" stays "living", not "liv")."""
    words = [surface(t) for t in texts]
    distinct = sorted(set(words) | {fold(w) for w in words})
    freq = dict(zip(distinct, zipf(distinct).tolist()))
    ids: dict[str, int] = {"": 0}
    out = np.empty(len(texts), np.int32)
    for i, w in enumerate(words):
        k = fold(w)
        if k != w and freq[k] < freq[w] - PIECE_RARER:
            k = w
        out[i] = ids.setdefault(k, len(ids))
    keys = list(ids)
    return keys, out, np.array([freq.get(k, 0.0) for k in keys], np.float32)


def key_candidates(word: str) -> list[str]:
    """The keys a typed word may have in a vocabulary (its own word first, then its fold)."""
    w = surface(word)
    return [w] if fold(w) == w else [w, fold(w)]


def initial_keys(texts: list[str], own: np.ndarray, n_keys: int) -> np.ndarray:
    """Per key: whether some token of it starts a word (a leading space marker). In vocabularies that mark
    word starts, a key only ever seen inside words ("ing", "foundland") is a piece, not a word; where the
    vocabulary marks none, every key counts as initial."""
    marked = np.fromiter((bool(t) and t[0] in SPACE_MARKERS for t in texts), bool, len(texts))
    out = np.zeros(n_keys, bool)
    if marked.mean() < 0.05:
        out[:] = True
        return out
    out[own[marked]] = True
    return out


def is_piece_of(piece: str, word: str, piece_zipf: float, word_zipf: float) -> bool:
    """The leading-piece rule of the module's docstring."""
    return (
        len(piece) >= PIECE_MIN_LETTERS
        and piece.isalpha()
        and word.isalpha()
        and word != piece
        and word.startswith(piece)
        and 2 * len(piece) >= len(word)
        and piece_zipf + PIECE_RARER <= word_zipf
    )


def stands_for(piece_text: str, word: str) -> bool:
    """Whether a token (e.g. the first of the tokens a word is split into) passes the leading-piece rule
    for ``word`` (or is the word itself)."""
    piece, whole = surface(piece_text), surface(word)
    if piece == whole:
        return True
    piece_zipf, word_zipf = zipf([piece, whole]).tolist()
    return is_piece_of(piece, whole, piece_zipf, word_zipf)


def word_groups(keys: list[str], freq: np.ndarray) -> np.ndarray:
    """For every key id, the key id of the word it stands for: itself, or, for a leading piece, the most
    common word it leads (followed to the end: a piece of a piece is a piece of the longer word)."""
    parent = np.arange(len(keys), dtype=np.int32)
    order = sorted(range(len(keys)), key=keys.__getitem__)
    ordered = [keys[i] for i in order]
    for i, p in enumerate(keys):
        if len(p) < PIECE_MIN_LETTERS or not p.isalpha():
            continue
        best = None
        for j in order[bisect_left(ordered, p) + 1 : bisect_left(ordered, p + "\U0010ffff")]:
            w = keys[j]
            if is_piece_of(p, w, float(freq[i]), float(freq[j])) and (
                best is None or (-freq[j], len(w), w) < (-freq[best], len(keys[best]), keys[best])
            ):
                best = j
        if best is not None:
            parent[i] = best
    for _ in range(8):  # Zipf rises at every step, so chains are short
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            break
        parent = nxt
    return parent


def specificity(keys: list[str], freq: np.ndarray, initial: np.ndarray | None = None) -> np.ndarray:
    """Per key: how specific a concept it names, in [0, 1] (the module's docstring)."""
    out = np.clip((COMMON_ZIPF - freq.astype(np.float64)) / (COMMON_ZIPF - RARE_ZIPF), 0.0, 1.0)
    for i, k in enumerate(keys):
        if len(k) < 2 or not any(c.isalpha() for c in k) or k in FUNCTION_WORDS:
            out[i] = 0.0
        elif freq[i] <= 0 or freq[i] < SHORT_WORD_ZIPF.get(len(k), 0.0) or (initial is not None and not initial[i]):
            out[i] = min(out[i], NON_WORD)
    return out.astype(np.float32)


_INVISIBLE = {"Cc", "Cf", "Zs", "Zl", "Zp", "Co", "Cn", "Cs"}


def escape_token(text: str) -> str:
    """A token as text a terminal shows unambiguously: control, format and space characters other than the
    plain space are written as escapes ("\\n", "\\t", "\\u00a0", "\\u200b"); everything else as it is."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == " " or unicodedata.category(ch) not in _INVISIBLE:
            out.append(ch)
        elif ch in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[ch])
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
    return "".join(out)


def quoted(text: str) -> str:
    """A token in double quotes, escaped (what the CLI's tables print)."""
    return '"' + escape_token(text).replace('"', '\\"') + '"'
