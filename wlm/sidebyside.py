"""The side-by-side panel: fp32 and a variant write from one random stream (``wlm.pair``), in
CPU turns (logic), and what a run has written so far, as the page shows it (view): both panes,
per-pane speed, the summary, the table at the word where they part, and a legend.
"""
from __future__ import annotations

import html
import shlex
import threading
import time
from typing import TYPE_CHECKING, Iterator

from .generate import MAX_WORDS, GenerationConfig
from .pair import PromptStep, generate_pair
from .recipes import NAME_PREFIX
from .text import format_p, md_escape, render_pane
from .threads import num_threads
from .variants import NO_SPEED, REFERENCE

if TYPE_CHECKING:
    from .shared import Shared

MAX_PROMPT_CHARS = 2_000
STREAM_INTERVAL_S = 0.1           # at most ~10 UI updates per second while generating: a turn of the CPU
DEFAULT_PROMPT = "The game was released in"
EXAMPLES = ["The game was released in", "The river flows through the", "In 1990 , the band", "She was born in",
            "The cathedral was built"]
COUPLING = """Each model samples exactly from its own distribution, but both use the same random numbers
(Gumbel-max with one shared noise vector per word), so they write the same word whenever their distributions
allow: the texts stay together while the models agree, part where int8 really changed the choice, and can meet
again later. The right pane is the variant chosen at the top: by default the tutorial's
`torch.ao.quantization.quantize_dynamic` model (LSTM and decoder weights int8), or another recipe, or the ONNX
Runtime engine. A word is one forward call over one token, so a dynamic int8 model takes its activations' scale
from that one token (the prompt is read in calls of up to 64 tokens)."""
LEGEND = (
    '<div class="wlm-legend"><b>Reading the panes.</b> '
    '<span class="wlm-word" style="background: rgba(234, 88, 12, 0.3)">shaded</span> words: the two models\' '
    'distributions differed at that step (darker: more; total variation). '
    '<span class="wlm-word" style="text-decoration: underline dotted 2px">dotted</span>: the other model would have '
    'picked another word there. '
    '<span class="wlm-word" style="outline: 2px solid currentColor; border-radius: 3px">boxed</span>: where the '
    'texts part. Hover or tap a word for both models\' probabilities.</div>')


class PairRun:
    """What one side-by-side run has written so far, and its views for the page.

    ``cfg`` (a ``GenerationConfig``) gives the command line that writes the same text;
    ``threads`` is the thread count every step ran at; ``disturbed_words`` counts the words
    timed while a variant was being built beside them (``wlm.turns``)."""

    def __init__(self, names, prompt_words, unknown, raw, cfg=None, threads: int = 1):
        self.names, self.prompt_words, self.unknown, self.raw = names, prompt_words, unknown, raw
        self.cfg, self.threads = cfg, threads
        self.steps = []
        self.secs = [0.0, 0.0]
        self.mark, self.top = None, None
        self.disturbed_words = 0
        self.why_faster = ""           # a measured sentence on why per-word speed-ups are larger (at the end)
        self.no_speed = False          # the right pane's low-bit weights compute in fp32: its speed says nothing

    def add(self, step) -> None:
        self.steps.append(step)
        for k in (0, 1):
            self.secs[k] += step.seconds[k]
        if step.top is not None and self.mark is None:
            self.mark, self.top = step.index, step.top

    def view(self, done: bool) -> tuple:
        n, names = len(self.steps), self.names
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        stats = [f"**{name}**: {n / s:,.0f} words/s · {1000 * s / n:.2f} ms per word ({n} words, {threads})"
                 if n and s > 0 else f"**{name}**: reading the prompt…" for name, s in zip(names, self.secs)]
        if self.no_speed and n:
            stats[1] += f" · {NO_SPEED}"
        htmls = [render_pane(self.prompt_words, [s.info[k] for s in self.steps], names, self.raw, self.mark)
                 for k in (0, 1)]
        notes = []
        if done:
            notes.append(self.summary())
            if self.cfg is not None:
                notes.append(self.command())
            if self.why_faster:
                notes.append(self.why_faster)
        if self.disturbed_words:
            notes.append(f"{self.disturbed_words} of these {n} words were timed while a variant was being prepared "
                         f"for another visitor, so their words/s may read low.")
        if self.unknown:
            notes.append("Not in the vocabulary, read as `<unk>`: " + ", ".join(f"`{w}`" for w in self.unknown))
        return htmls[0], htmls[1], stats[0], stats[1], "\n\n".join(notes), self.parting_table()

    def summary(self) -> str:
        n, (a, b) = len(self.steps), self.names
        same = [sum(s.info[k].same for s in self.steps) for k in (0, 1)]
        differ = sum(s.words[0] != s.words[1] for s in self.steps)
        if self.mark is None:
            head = f"**Both models wrote the same {n} words.**"
        else:
            w = self.steps[self.mark].words
            head = (f"**Identical for the first {self.mark} of {n} words.** At word {self.mark + 1} (boxed) {a} wrote "
                    f"“{md_escape(w[0])}”, {b} “{md_escape(w[1])}”: quantization moved that word's probability enough that the shared random "
                    f"number picked another word. From there each model continues from its own text; because both "
                    f"still draw with the same noise, the texts can meet again later, and the panes differ at "
                    f"{differ} of {n} positions.")
        rate = sum(same) / (2 * n)
        expect = "" if rate >= 1 else f", i.e. a parting every {1 / (1 - rate):.0f} words on average"
        return (f"{head} Step by step, in each pane's own context and with the same random numbers, {b} would have "
                f"picked {a}'s word at {same[0]} of {n} steps and {a} {b}'s at {same[1]} of {n}: an agreement of "
                f"**{rate:.1%}**{expect}.")

    def command(self) -> str:
        """The command line that writes the same text as each pane."""
        c = self.cfg
        base = (f"python -m wlm generate --prompt {shlex.quote(c.prompt)} --words {c.words} "
                f"--temperature {c.temperature!r} --seed {c.seed} --threads {self.threads}")
        other = self.names[1]
        flag = (f"--recipe {shlex.quote(other[len(NAME_PREFIX):])}" if other.startswith(NAME_PREFIX)
                else f"--variant {other}")
        return f"The same texts from the command line: `{base}` (left), and with `{flag}` (right)."

    def parting_table(self) -> str:
        """HTML table of both models' top 5 next words at the step where the texts part."""
        if self.top is None:
            return ""
        a, b = (html.escape(n) for n in self.names)
        chosen = self.steps[self.mark].words
        rows = "".join(f"<tr><td>{'<b>' + html.escape(w) + '</b> ◂' if w in chosen else html.escape(w)}</td>"
                       f"<td>{format_p(pa)}</td><td>{format_p(pb)}</td></tr>" for w, pa, pb in self.top)
        return (f'<table class="wlm-top"><caption>Where the texts part (word {self.mark + 1}): each model\'s top 5 '
                f'next words and the two words drawn (◂)</caption><thead><tr><th>word</th><th>p({a})</th>'
                f'<th>p({b})</th></tr></thead><tbody>{rows}</tbody></table>')


class SideBySide:
    """The side-by-side panel of ``app`` (a ``wlm.shared.Shared``)."""

    def __init__(self, app: "Shared"):
        self.app = app
        self._first = None
        self._first_lock = threading.Lock()

    def generate(self, prompt, words=100, temperature=1.0, seed=0, raw=False, variant=None) -> Iterator[tuple]:
        """Stream (fp32 html, variant html, fp32 stats, variant stats, notes, parting table) while
        fp32 and the variant write from one random stream (``wlm.pair.generate_pair``).

        The work goes in turns of at most ``STREAM_INTERVAL_S`` (``wlm.turns``): the CPU is
        given back before each update is sent, and every turn runs at the app's thread count
        on whichever worker thread resumes this generator."""
        app = self.app
        if prompt is None:
            prompt = ""
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be text, got {type(prompt).__name__}")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt is {len(prompt):,} characters long; the limit is {MAX_PROMPT_CHARS:,}")
        cfg = GenerationConfig(prompt=prompt, words=app.int_arg("words", words, 1, MAX_WORDS),
                               temperature=app.float_arg("temperature", temperature, 0.0, 10.0),
                               seed=app.seed_arg(seed))
        name = app.variant_arg(variant)
        raw = app.bool_arg("raw", raw)
        if not app.is_built(name):
            yield ("", "", "", "", f"Preparing **{name}** (first use: {app.spec(name).recipe})…", "")
        pair = [app.model(REFERENCE), app.model(name)]     # waits for this variant's build only
        threads = app.cfg.threads
        run = PairRun((REFERENCE, name), app.dictionary.tokenize(prompt), app.dictionary.encode(prompt).unknown,
                      raw, cfg=cfg, threads=threads)
        run.why_faster = app.call_line(name)
        run.no_speed = not app.spec(name).speed_claimed
        # a long prompt is read a chunk per step, so no step is longer than a chunk's work
        steps = generate_pair([v.model for v in pair], app.dictionary, cfg, threads=None, prompt_steps=True)
        done = False
        while not done:
            with app.turns.generate() as turn, num_threads(threads):
                until, k, n = time.perf_counter() + STREAM_INTERVAL_S, 0, 0     # steps, words
                while not done and (k == 0 or time.perf_counter() < until):
                    step = next(steps)
                    k += 1
                    if isinstance(step, PromptStep):
                        continue
                    run.add(step)
                    n += 1
                    done = step.index + 1 == cfg.words
                if turn.disturbed:
                    run.disturbed_words += n
                view = run.view(done=done)
            yield view

    def first_view(self) -> tuple:
        """A generation on screen from the start: the default prompt, seed 0, fp32 and the
        tutorial's qint8, computed once (on the first page load, in CPU turns) and then shown
        to every visitor as it was."""
        with self._first_lock:
            if self._first is None:
                *_, self._first = self.generate(DEFAULT_PROMPT, 100, 1.0, 0, False, self.app.default_variant)
            return self._first

    def title(self, name) -> str:
        name = self.app.variant_arg(name)
        spec = self.app.spec(name)
        engine = spec.engine if spec.speed_claimed else f"{spec.engine}, low-bit weights computed in fp32"
        return f"## {name} ({engine})"
