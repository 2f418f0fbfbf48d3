"""WikiText-2 corpus: dictionary, tokenization and batching, as in pytorch/examples.

Each line is split on white space and ``<eos>`` is appended; word ids are given in
order of first appearance over train, then valid, then test.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")
DEFAULT_DATA_DIR = Path("data/wikitext-2")
TEST_TOKENS = 245_569                  # ids in the test split (245,568 predicted)
FULL_SLICE = "all (245,569 tokens)"    # the name of the whole test split in stored results and on the page
# A word's parts, WikiText-2 style: <unk>/@-@ kept whole, "n't", "'s", runs of letters/digits, single marks.
_WORD_PARTS = re.compile(r"<unk>|@[-,.]@|\w+(?=n't)|n't|'\w+|\w+|[^\w\s]")
_INNER = {"-": "@-@", ",": "@,@", ".": "@.@"}     # inside a word (",", "." only between digits)


MISSING_HINT = ("Run `python -m wlm download`, or point --data / WLM_DATA at a folder "
                "holding train.txt, valid.txt and test.txt.")


def resolve_data_dir(data: str | os.PathLike | None = None) -> Path:
    """The data folder: ``data`` if given, else ``$WLM_DATA``, else ``data/wikitext-2``."""
    if data:
        return Path(data)
    env = os.environ.get("WLM_DATA")
    return Path(env) if env else DEFAULT_DATA_DIR


def slice_label(max_tokens: int | None) -> str:
    """The name of the first ``max_tokens`` ids of a split (None: all of the test split), as stored
    results and the page name them: ``"5,000 tokens"``, ``FULL_SLICE``."""
    return FULL_SLICE if max_tokens is None else f"{max_tokens:,} tokens"


def tokenize_line(line: str) -> list[str]:
    """Words of one line of text followed by ``<eos>``."""
    return line.split() + [EOS]


@dataclass
class Encoded:
    """Ids of a user text, plus the words that were read as ``<unk>``."""
    ids: list[int]
    unknown: list[str] = field(default_factory=list)


class Dictionary:
    """Word <-> id mapping; ids in order of first appearance."""

    def __init__(self, words: list[str] | None = None):
        self.idx2word: list[str] = []
        self.word2idx: dict[str, int] = {}
        for w in words or []:
            self.add_word(w)

    def add_word(self, word: str) -> int:
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]

    def __len__(self) -> int:
        return len(self.idx2word)

    def tokenize(self, text: str) -> list[str]:
        """Split free text on white space; a word the dictionary lacks is split the way
        WikiText-2 writes it, where that helps: ``2010.`` -> ``2010 .``, ``well-known`` ->
        ``well @-@ known``, ``1,000`` -> ``1 @,@ 000``, ``don't`` -> ``do n't``."""
        out: list[str] = []
        for w in text.split():
            if w in self.word2idx:
                out.append(w)
                continue
            parts = _WORD_PARTS.findall(w)
            for i, p in enumerate(parts):
                between = 0 < i < len(parts) - 1
                if between and p in _INNER and (p == "-" or (parts[i - 1].isdigit() and parts[i + 1].isdigit())):
                    p = _INNER[p]
                out.append(p)
        return out

    def encode(self, text: str) -> Encoded:
        """Encode free text (``tokenize``, no ``<eos>`` added).

        Words not in the dictionary become ``<unk>`` and are listed in ``unknown``.
        Raises ValueError if the dictionary has no ``<unk>`` to map them to.
        """
        ids, unknown = [], []
        for w in self.tokenize(text):
            if w in self.word2idx:
                ids.append(self.word2idx[w])
            else:
                if UNK not in self.word2idx:
                    raise ValueError(f"word {w!r} is not in the vocabulary, which has no {UNK}")
                ids.append(self.word2idx[UNK])
                unknown.append(w)
        return Encoded(ids, unknown)

    def decode(self, ids) -> list[str]:
        return [self.idx2word[int(i)] for i in ids]


class Corpus:
    """The three splits of a corpus folder as 1-D int64 tensors of ids."""

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        missing = [s for s in SPLITS if not (path / f"{s}.txt").is_file()]
        if missing:
            raise FileNotFoundError(f"WikiText-2 not found in {path}: missing "
                                    f"{', '.join(s + '.txt' for s in missing)}. {MISSING_HINT}")
        self.path = path
        self.dictionary = Dictionary()
        self.train = self._tokenize(path / "train.txt")
        self.valid = self._tokenize(path / "valid.txt")
        self.test = self._tokenize(path / "test.txt")

    def split(self, name: str) -> torch.Tensor:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
        return getattr(self, name)

    def _tokenize(self, file: Path) -> torch.Tensor:
        ids: list[int] = []
        with open(file, encoding="utf8") as f:
            for line in f:
                ids.extend(self.dictionary.add_word(w) for w in tokenize_line(line))
        return torch.tensor(ids, dtype=torch.int64)


def load_split(folder: str | os.PathLike, split: str, dictionary: Dictionary) -> torch.Tensor:
    """One split of a corpus folder as ids of an existing dictionary (e.g. a checkpoint's).

    Cheaper than building the whole Corpus when only the test split is needed. Raises
    ValueError if the file holds words the dictionary does not know.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    file = Path(folder) / f"{split}.txt"
    if not file.is_file():
        raise FileNotFoundError(f"WikiText-2 not found: {file} is missing. {MISSING_HINT}")
    w2i = dictionary.word2idx
    ids: list[int] = []
    with open(file, encoding="utf8") as f:
        for n, line in enumerate(f, 1):
            for w in tokenize_line(line):
                if w not in w2i:
                    raise ValueError(f"{file}, line {n}: word {w!r} is not in the model's vocabulary; "
                                     "is this the WikiText-2 the model was trained on?")
                ids.append(w2i[w])
    return torch.tensor(ids, dtype=torch.int64)


def batchify(data: torch.Tensor, bsz: int) -> torch.Tensor:
    """Cut a 1-D id sequence into ``bsz`` columns, dropping the remainder.

    ┌ a g m s ┐
    │ b h n t │   a..x with bsz=4: each column is a contiguous stretch of text,
    │ c i o u │   batches run down the rows, so the hidden state of column j
    │ d j p v │   carries over from one chunk to the next.
    │ e k q w │
    └ f l r x ┘
    Returns (nbatch, bsz).
    """
    nbatch = data.size(0) // bsz
    return data[: nbatch * bsz].view(bsz, -1).t().contiguous()


def get_batch(source: torch.Tensor, i: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (seq, bsz) starting at row i and targets shifted by one, flattened (seq*bsz,)."""
    seq_len = min(bptt, len(source) - 1 - i)
    data = source[i:i + seq_len]
    target = source[i + 1:i + 1 + seq_len].reshape(-1)
    return data, target
