"""What the web demo does, without the web: load once, generate side by side, measure.

``demo.py`` only lays out components and wires each event to one method here, so all of
this is testable without a server and usable from a notebook.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd

from .bench import compare, machine_info
from .checkpoint import load_checkpoint
from .data import load_split, resolve_data_dir
from .download import SHA256, DownloadError, download, sha256_file
from .evaluate import num_threads
from .generate import MAX_WORDS, GenerationConfig, generate_pair
from .quantize import TUTORIAL, model_size, quantize
from .text import first_difference, render_html

DEFAULT_CHECKPOINT = "data/wlm-lstm.safetensors"
SLICES = {"2,000 tokens": 2_000, "5,000 tokens": 5_000, "20,000 tokens": 20_000, "50,000 tokens": 50_000,
          "all (245,569 tokens)": None}
DEFAULT_SLICE = "5,000 tokens"
MAX_PROMPT_CHARS = 2_000
STREAM_INTERVAL_S = 0.05          # at most ~20 UI updates per second while generating
MODULE_LABELS = {"encoder": "embedding", "rnn": "LSTM", "decoder": "decoder"}
TABLE_COLUMNS = ["model", "size MB", "loss", "perplexity", "seconds", "tokens/s", "speed-up x", "loss change"]


@dataclass(frozen=True)
class AppConfig:
    checkpoint: str = DEFAULT_CHECKPOINT
    data: str | None = None        # None: $WLM_DATA, else data/wikitext-2
    threads: int = 1               # default thread count (the tutorial's 1)


def _as_int(name: str, value, lo: int, hi: int) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}") from None
    if not math.isfinite(f) or f != int(f) or not lo <= f <= hi:
        raise ValueError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")
    return int(f)


def _as_float(name: str, value, lo: float, hi: float) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number from {lo} to {hi}, got {value!r}") from None
    if not math.isfinite(f) or not lo <= f <= hi:
        raise ValueError(f"{name} must be a number from {lo} to {hi}, got {value!r}")
    return f


class QuantDemo:
    """The fp32 model of a checkpoint and its qint8 copy, built once."""

    def __init__(self, cfg: AppConfig):
        t0 = time.perf_counter()
        self.cfg = cfg
        self.ckpt = load_checkpoint(cfg.checkpoint)
        self.dictionary = self.ckpt.dictionary
        self.models = {"fp32": self.ckpt.model, TUTORIAL.name: quantize(self.ckpt.model, TUTORIAL)}
        self.sizes = {name: model_size(m) for name, m in self.models.items()}
        self.data_dir = resolve_data_dir(cfg.data)
        self._test_ids = None
        self._test_is_wikitext = False
        self._lock = threading.Lock()
        self.load_seconds = time.perf_counter() - t0

    # ---------------------------------------------------------------- generation
    def generate(self, prompt, words=100, temperature=1.0, seed=0, raw=False) -> Iterator[tuple]:
        """Stream (fp32 html, qint8 html, fp32 stats, qint8 stats, notes) while both models write."""
        if prompt is None:
            prompt = ""
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be text, got {type(prompt).__name__}")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt is {len(prompt):,} characters long; the limit is {MAX_PROMPT_CHARS:,}")
        cfg = GenerationConfig(prompt=prompt, words=_as_int("words", words, 1, MAX_WORDS),
                               temperature=_as_float("temperature", temperature, 0.0, 10.0),
                               seed=_as_int("seed", seed, 0, 2**63 - 1))
        raw = bool(raw)
        names = list(self.models)
        prompt_words = self.dictionary.tokenize(prompt)
        unknown = self.dictionary.encode(prompt).unknown
        texts: tuple[list[str], list[str]] = ([], [])
        secs = [0.0, 0.0]
        last = 0.0
        for step in generate_pair(list(self.models.values()), self.dictionary, cfg, threads=self.cfg.threads):
            for k in (0, 1):
                texts[k].append(step.words[k])
                secs[k] += step.seconds[k]
            now = time.perf_counter()
            if now - last >= STREAM_INTERVAL_S and step.index + 1 < cfg.words:
                last = now
                yield self._gen_view(names, prompt_words, texts, secs, raw, None, unknown, done=False)
        mark = first_difference(*texts)
        yield self._gen_view(names, prompt_words, texts, secs, raw, mark, unknown, done=True)

    @staticmethod
    def _gen_view(names, prompt_words, texts, secs, raw, mark, unknown, done):
        n = len(texts[0])
        stats = [f"**{name}**: {n / s:,.0f} words/s · {1000 * s / n:.2f} ms per word ({n} words)"
                 for name, s in zip(names, secs)]
        notes = []
        if done:
            if mark is None:
                notes.append(f"Both models wrote the same {n} words.")
            else:
                notes.append(f"The texts part at word {mark + 1} of {n} (highlighted): fp32 wrote “{texts[0][mark]}”, "
                             f"qint8 “{texts[1][mark]}”; from there each model continues from its own words.")
        if unknown:
            notes.append("Not in the vocabulary, read as `<unk>`: " + ", ".join(f"`{w}`" for w in unknown))
        htmls = [render_html(prompt_words, t, raw=raw, mark=mark if done else None) for t in texts]
        return htmls[0], htmls[1], stats[0], stats[1], "\n\n".join(notes)

    # ---------------------------------------------------------------- measurement
    def data_status(self) -> str:
        missing = [n for n in SHA256 if not (self.data_dir / n).is_file()]
        if "test.txt" not in missing:
            return f"WikiText-2 test split: `{self.data_dir / 'test.txt'}`."
        return (f"**WikiText-2 is not here** (`{self.data_dir}` lacks test.txt). Size needs no data; for loss and "
                f"speed, click **Download WikiText-2** (about 13 MB, sha256-verified), or copy train.txt, valid.txt "
                f"and test.txt into `{self.data_dir}` (or set `WLM_DATA` to their folder) and measure again.")

    def _test_split(self):
        with self._lock:
            if self._test_ids is None:
                self._test_ids = load_split(self.data_dir, "test", self.dictionary)
                self._test_is_wikitext = sha256_file(self.data_dir / "test.txt") == SHA256["test.txt"]
            return self._test_ids

    def measure(self, slice_label=DEFAULT_SLICE, threads=None,
                progress: Callable[[int, int], None] | None = None) -> tuple:
        """Evaluate both models on the first N test tokens.

        Returns (table, size plot frame, time plot frame, status markdown, machine markdown).
        """
        if slice_label not in SLICES:
            raise ValueError(f"slice must be one of {', '.join(SLICES)}, got {slice_label!r}")
        threads = self.cfg.threads if threads in (None, "") else _as_int("threads", threads, 1, 64)
        if not (self.data_dir / "test.txt").is_file():
            return (pd.DataFrame(columns=TABLE_COLUMNS), self.size_frame(), self.time_frame([]),
                    self.data_status(), self.machine_markdown(threads))
        ids = self._test_split()
        rows = compare(self.models, ids, max_tokens=SLICES[slice_label], threads=threads, progress=progress)
        table = pd.DataFrame([[m.model, round(m.size_mb, 3), round(m.loss, 4), round(m.ppl, 2), round(m.seconds, 2),
                               round(m.tokens_per_s), round(m.speedup, 2), round(m.loss_change, 4)] for m in rows],
                             columns=TABLE_COLUMNS)
        fp, q = rows
        status = (f"{fp.tokens:,} test tokens, {threads} thread(s): qint8 is **{q.speedup:.2f}x** "
                  f"{'faster' if q.speedup >= 1 else 'slower'}, **{fp.size_mb / q.size_mb:.2f}x** smaller, "
                  f"loss {q.loss_change:+.4f} (tutorial, full split: 1.76x, 1.43x, +0.001).")
        if not self._test_is_wikitext:
            status += f" Note: `{self.data_dir / 'test.txt'}` is not the published WikiText-2 file (sha256 differs)."
        return table, self.size_frame(), self.time_frame(rows), status, self.machine_markdown(threads)

    def size_frame(self) -> pd.DataFrame:
        """Size per model and module (MB), for a stacked bar plot."""
        return pd.DataFrame([{"model": name, "part": MODULE_LABELS.get(part, part), "MB": round(mb, 3)}
                             for name, rep in self.sizes.items() for part, mb in rep.modules_mb.items()])

    @staticmethod
    def time_frame(rows) -> pd.DataFrame:
        # explicit dtypes: an empty frame must still plot "model" as a category
        return pd.DataFrame({"model": pd.Series([m.model for m in rows], dtype="string"),
                             "seconds": pd.Series([round(m.seconds, 3) for m in rows], dtype="float64")})

    def download_data(self, progress_factory=None) -> str:
        """Fetch WikiText-2 into the data folder; returns a status line (errors included)."""
        try:
            download(self.data_dir, progress_factory=progress_factory)
        except DownloadError as e:
            return f"**Download failed.** {e}"
        return f"WikiText-2 downloaded to `{self.data_dir}` and verified. " + self.data_status()

    # ---------------------------------------------------------------- descriptions
    def model_text(self, name: str) -> str:
        return f"{self.models[name]}\n\n# size: {self.sizes[name].total_mb:.3f} MB (torch.save of the state_dict)"

    def machine_markdown(self, threads: int | None = None) -> str:
        with num_threads(threads):
            info = machine_info()
        p = self.ckpt.provenance
        lines = [f"- CPU: {info['cpu']} ({info['arch']}, {info['cores']} cores)",
                 f"- avx512_vnni: {'yes' if info['avx512_vnni'] else 'no'} · avx2: {'yes' if info['avx2'] else 'no'}",
                 f"- torch {info['torch']} · quantized engine `{info['quantized_engine']}` · threads {info['threads']}"]
        if "test_loss" in p:
            lines.append(f"- checkpoint: {p.get('epochs', '?')} epochs, test loss {p['test_loss']:.3f} (fp32, full split)")
        return "\n".join(lines)
