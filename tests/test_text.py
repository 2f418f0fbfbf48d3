from wlm.text import detokenize, first_difference


def test_detokenize_renders_wikitext_readably():
    toks = "The 1 @,@ 000 @-@ year war ( in France ) ended , he said . <eos> It was n't".split()
    assert detokenize(toks) == "The 1,000-year war (in France) ended, he said.\nIt wasn't"
    assert detokenize(["a", "<eos>", "<eos>", "<eos>", "<eos>", "b"]) == "a\n\nb"
    assert detokenize([]) == ""


def test_first_difference():
    assert first_difference(["a", "b", "c"], ["a", "x", "c"]) == 1
    assert first_difference(["a", "b"], ["a", "b"]) is None
    assert first_difference(["a"], ["a", "b"]) == 1


def test_render_html_marks_and_escapes():
    from wlm.text import render_html
    h = render_html(["<unk>", "said"], ["a", "<b>", ".", "<eos>", "c"], mark=1)
    assert 'class="wlm-prompt" style="opacity: 0.6">&lt;unk&gt;</span>' in h
    assert ' a <mark class="wlm-diverge"' in h and 'differ">&lt;b&gt;</mark>.\nc' in h
    raw = render_html([], ["a", "@-@", "<eos>"], raw=True)
    assert "a @-@ &lt;eos&gt;" in raw
