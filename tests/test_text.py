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
