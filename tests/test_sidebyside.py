"""wlm.sidebyside's views: what a run's notes say, whatever words it wrote."""
from wlm.pair import PairStep, WordInfo
from wlm.sidebyside import PairRun


def step(i, a, b, top=None):
    return PairStep(i, (a, b), (0.001, 0.001), (WordInfo(a, (0.5, 0.4), 0.1, a == b), WordInfo(b, (0.3, 0.2), 0.1, a == b)),
                    top)


def test_a_parting_at_a_word_markdown_would_eat_keeps_the_whole_summary():
    """<unk> (or a * or _) in the words where the texts part is written as a word, so the Markdown
    after it (the agreement, the command) is still there."""
    run = PairRun(("fp32", "recipe: decoder=int2-row"), [], [], False)
    run.add(step(0, "the", "the"))
    run.add(step(1, "*", "<unk>", top=[("*", 0.5, 0.1), ("<unk>", 0.1, 0.4)]))
    run.add(step(2, "a", "b"))
    notes = run.view(done=True)[4]
    assert "fp32 wrote “\\*”, recipe: decoder=int2-row “\\<unk\\>”" in notes
    assert "Step by step" in notes and notes.rstrip().endswith("on average.")
