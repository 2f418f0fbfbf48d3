"""The side-by-side view: what one coupled run (``wlm.pair``) has written so far, as the page
shows it: both panes, per-pane speed, the summary and the table at the word where they part."""
from __future__ import annotations

import html
import shlex

from .text import format_p, render_pane


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
                 for name, s in zip(names, self.secs)]
        htmls = [render_pane(self.prompt_words, [s.info[k] for s in self.steps], names, self.raw, self.mark)
                 for k in (0, 1)]
        notes = []
        if done:
            notes.append(self.summary())
            if self.cfg is not None:
                notes.append(self.command())
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
                    f"“{w[0]}”, {b} “{w[1]}”; from there each model continues from its own text, and the panes "
                    f"differ at {differ} of {n} positions.")
        rate = sum(same) / (2 * n)
        expect = "" if rate >= 1 else f", i.e. a parting every {1 / (1 - rate):.0f} words on average"
        return (f"{head} Step by step, in each pane's own context and with the same random numbers, {b} would have "
                f"picked {a}'s word at {same[0]} of {n} steps and {a} {b}'s at {same[1]} of {n}: an agreement of "
                f"**{rate:.1%}**{expect}. Hover a word for both models' probabilities; shading is the total "
                f"variation between their distributions at that step, and a dotted underline marks a word the "
                f"other model would not have picked.")

    def command(self) -> str:
        """The command line that writes the same text as each pane."""
        c = self.cfg
        base = (f"python -m wlm generate --prompt {shlex.quote(c.prompt)} --words {c.words} "
                f"--temperature {c.temperature!r} --seed {c.seed} --threads {self.threads}")
        return (f"The same texts from the command line: `{base}` (left), and with `--variant {self.names[1]}` "
                f"(right).")

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
