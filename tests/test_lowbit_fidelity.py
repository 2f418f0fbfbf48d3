"""The shipped low-bit recipe (lowbit-mixed) on the real checkpoint and the real WikiText-2: its
packed file's size, its dequantized export in the tutorial's own class, and its quality on the
first test tokens (the whole split is measured by bench: docs/results.md)."""
import pytest
import torch

from tests.conftest import SHIPPED_CHECKPOINT
from tests.tutorial_model import LSTMModel as TutorialLSTMModel
from wlm.checkpoint import load_checkpoint
from wlm.evaluate import Comparison
from wlm.packed import read_packed, save_dequantized, write_packed
from wlm.variants import VariantCache

pytestmark = [pytest.mark.wikitext,
              pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="no shipped checkpoint in data/ yet")]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    ck = load_checkpoint(SHIPPED_CHECKPOINT)
    return ck, VariantCache(ck, tmp_path_factory.mktemp("cache")).get("lowbit-mixed")


def test_the_shipped_recipe_packs_into_at_most_18_mb_and_reads_back(shipped, tmp_path):
    ck, low = shipped
    assert low.size.total_mb <= 18.0
    path = write_packed(tmp_path / "low.safetensors", low.model, ck.dictionary.idx2word, low.model.recipe_text,
                        low.model.quantized)
    assert path.stat().st_size / 1e6 == pytest.approx(low.size.total_mb, abs=1e-6)
    back, *_ = read_packed(path)
    assert all(torch.equal(a, b) for a, b in zip(low.model.state_dict().values(), back.state_dict().values()))


def test_its_dequantized_export_is_the_same_model_in_the_tutorials_class(shipped, tmp_path, wikitext_corpus):
    """Loaded strictly into the tutorial's class, the export gives the variant's logits bit for bit,
    so it reproduces the variant's quality on any tokens."""
    ck, low = shipped
    path = save_dequantized(tmp_path / "d.safetensors", low.model, ck.dictionary, {"dequantized_from": "lowbit-mixed"})
    c = ck.model.config
    t = TutorialLSTMModel(c.ntoken, c.ninp, c.nhid, c.nlayers, c.dropout).eval()
    t.load_state_dict(load_checkpoint(path).model.state_dict(), strict=True)
    x = wikitext_corpus.test[:500].view(-1, 1)
    with torch.no_grad():
        assert torch.equal(low.model(x, low.model.init_hidden(1))[0], t(x, t.init_hidden(1))[0])


def test_on_the_first_test_tokens_it_is_as_good_as_the_tutorials_qint8(shipped, wikitext_corpus):
    ck, low = shipped
    fp, q = Comparison({"fp32": ck.model, "lowbit-mixed": low.model}, wikitext_corpus.test, max_tokens=5000).run()
    a = q.agreement
    assert a.kl_mean + 2 * a.kl_mean_se < 0.0045 and a.top1 - 2 * a.top1_se > 0.95
