from wlm.text import detokenize


def test_detokenize_renders_wikitext_readably():
    toks = "The 1 @,@ 000 @-@ year war ( in France ) ended , he said . <eos> It was n't".split()
    assert detokenize(toks) == "The 1,000-year war (in France) ended, he said.\nIt wasn't"
    assert detokenize(["a", "<eos>", "<eos>", "<eos>", "<eos>", "b"]) == "a\n\nb"
    assert detokenize([]) == ""


def test_render_pane_carries_probabilities_and_marks():
    from wlm.pair import WordInfo
    from wlm.text import format_p, render_pane
    steps = [WordInfo("a", (0.5, 0.4), 0.1, True), WordInfo("<b>", (0.00002, 0.3), 0.6, False),
             WordInfo(".", (0.9, 0.9), 0.0, True), WordInfo("<eos>", (0.2, 0.2), 0.01, True),
             WordInfo("c", (0.1, 0.1), 0.02, True)]
    h = render_pane(["<unk>", "said"], steps, ("fp32", "qint8"), mark=1)
    assert 'class="wlm-prompt" style="opacity: 0.75">&lt;unk&gt;</span>' in h
    assert 'title="a: p(fp32) = 0.500, p(qint8) = 0.400; total variation 0.100"' in h
    assert 'class="wlm-word wlm-flip wlm-diverge"' in h and "underline dotted" in h and "&lt;b&gt;</span>" in h
    assert 'data-p-ref="0.000020" data-p-other="0.300000"' in h and "p(fp32) = 2.0e-05" in h
    assert h.count("wlm-flip") == 1 and "rgba(234, 88, 12, 0.55)" in h       # TV 0.6: fully shaded
    raw = render_pane([], steps, ("fp32", "qint8"), raw=True)
    assert "&lt;eos&gt;" in raw and "wlm-diverge" not in raw
    assert [format_p(p) for p in (0.351, 0.0042, 0.000073)] == ["0.351", "0.0042", "7.3e-05"]
