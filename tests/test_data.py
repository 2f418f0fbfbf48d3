import pytest
import torch

from wlm.data import Corpus, Dictionary, batchify, get_batch, resolve_data_dir


def test_dictionary_ids_by_first_appearance_over_train_valid_test(tmp_path):
    for name, text in (("train", "b a\n\na c\n"), ("valid", "d b\n"), ("test", "e a\n")):
        (tmp_path / f"{name}.txt").write_text(text)
    c = Corpus(tmp_path)
    assert c.dictionary.idx2word == ["b", "a", "<eos>", "c", "d", "e"]
    assert c.train.tolist() == [0, 1, 2, 2, 1, 3, 2]     # empty line is one <eos>
    assert c.valid.tolist() == [4, 0, 2] and c.test.tolist() == [5, 1, 2]
    assert c.train.dtype == torch.int64


def test_encode_maps_unknown_words_to_unk_and_reports_them():
    d = Dictionary(["the", "<unk>", "cat"])
    enc = d.encode("  the dog cat  zebra\n")
    assert enc.ids == [0, 1, 2, 1]
    assert enc.unknown == ["dog", "zebra"]
    assert d.decode(enc.ids) == ["the", "<unk>", "cat", "<unk>"]
    assert d.encode("").ids == []


def test_encode_without_unk_in_vocabulary_is_an_error():
    with pytest.raises(ValueError, match="not in the vocabulary"):
        Dictionary(["a"]).encode("b")


def test_batchify_columns_are_contiguous_text():
    data = torch.arange(26)
    b = batchify(data, 4)                      # 26 // 4 = 6 rows, 2 ids dropped
    assert b.shape == (6, 4)
    assert b[:, 1].tolist() == [6, 7, 8, 9, 10, 11]
    x, y = get_batch(b, 0, 4)
    assert x.shape == (4, 4) and torch.equal(y, b[1:5].reshape(-1))
    x, y = get_batch(b, 4, 4)                  # last chunk is shorter
    assert x.shape == (1, 4)


def test_missing_corpus_files_give_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m wlm download"):
        Corpus(tmp_path)


def test_data_dir_resolution(monkeypatch):
    monkeypatch.delenv("WLM_DATA", raising=False)
    assert str(resolve_data_dir()) == "data/wikitext-2"
    monkeypatch.setenv("WLM_DATA", "/x/y")
    assert str(resolve_data_dir()) == "/x/y"
    assert str(resolve_data_dir("/given")) == "/given"


@pytest.mark.wikitext
def test_wikitext2_vocabulary_and_token_counts(wikitext_corpus):
    c = wikitext_corpus
    assert len(c.dictionary) == 33278
    assert (len(c.train), len(c.valid), len(c.test)) == (2088628, 217646, 245569)
    assert c.dictionary.idx2word[:3] == ["<eos>", "=", "Valkyria"]
    assert "<unk>" in c.dictionary.word2idx


def test_load_split_uses_the_given_dictionary(tiny_dir, tiny_corpus):
    from wlm.data import load_split
    assert torch.equal(load_split(tiny_dir, "test", tiny_corpus.dictionary), tiny_corpus.test)
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        load_split(tiny_dir, "test", Dictionary(["w1", "<eos>"]))
    with pytest.raises(FileNotFoundError, match="download"):
        load_split(tiny_dir / "nope", "test", tiny_corpus.dictionary)


def test_user_text_is_split_the_way_wikitext_writes_it():
    d = Dictionary("<unk> It was well @-@ known in 2010 , 1 @,@ 000 do n't you think ? ( a ) 3 @.@ 5 .".split())
    enc = d.encode("It was well-known in 2010, 1,000 don't you think? (a) 3.5.")
    assert d.decode(enc.ids) == "It was well @-@ known in 2010 , 1 @,@ 000 do n't you think ? ( a ) 3 @.@ 5 .".split()
    assert enc.unknown == []
    enc = d.encode("Zorbly-2010 well @-@ known")
    assert enc.unknown == ["Zorbly"] and d.decode(enc.ids)[1:] == ["@-@", "2010", "well", "@-@", "known"]
