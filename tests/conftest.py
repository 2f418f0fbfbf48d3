"""Shared fixtures: a tiny synthetic corpus and model (fast tests), and the real WikiText-2."""
import os
import random
from pathlib import Path

import pytest
import torch

from wlm.checkpoint import save_checkpoint
from wlm.data import Corpus
from wlm.model import LSTMModel, ModelConfig

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CHECKPOINT = ROOT / "data" / "wlm-lstm.safetensors"


def wikitext_dir() -> Path:
    return Path(os.environ.get("WLM_DATA") or ROOT.parent / "shared" / "data" / "wikitext-2")


@pytest.fixture(scope="session")
def wikitext() -> Path:
    d = wikitext_dir()
    if not all((d / f"{s}.txt").is_file() for s in ("train", "valid", "test")):
        pytest.skip(f"real WikiText-2 not found in {d} (set WLM_DATA to the folder with train/valid/test.txt)")
    return d


@pytest.fixture(scope="session")
def wikitext_corpus(wikitext) -> Corpus:
    return Corpus(wikitext)


def write_tiny_corpus(folder: Path, seed: int = 0) -> Path:
    """Three small files of random sentences over a 40-word vocabulary, with WikiText-2's marks."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(36)] + ["<unk>", "@-@", ",", "."]
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in (("train", 200), ("valid", 40), ("test", 40)):
        with open(folder / f"{name}.txt", "w") as f:
            for _ in range(lines):
                f.write(" " + " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 12))) + " \n")
    return folder


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("tiny-corpus"))


@pytest.fixture(scope="session")
def tiny_corpus(tiny_dir) -> Corpus:
    return Corpus(tiny_dir)


@pytest.fixture
def tiny_model(tiny_corpus) -> LSTMModel:
    torch.manual_seed(0)
    return LSTMModel(ModelConfig(len(tiny_corpus.dictionary), ninp=16, nhid=12, nlayers=2, dropout=0.2)).eval()


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_model, tiny_corpus) -> Path:
    return save_checkpoint(tmp_path / "tiny.safetensors", tiny_model, tiny_corpus.dictionary, {"note": "test"})


def pytest_configure(config):
    # One thread: the tutorial's setting, deterministic, and kind to a machine that is training.
    torch.set_num_threads(1)
