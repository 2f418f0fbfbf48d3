import pytest
import torch

from tests.tutorial_model import LSTMModel as TutorialLSTMModel
from wlm.model import LSTMModel, ModelConfig, detach_hidden


def test_tutorial_shapes_print_as_the_tutorial():
    m = LSTMModel(ModelConfig(33278))
    s = str(m)
    assert "(encoder): Embedding(33278, 512)" in s
    assert "(rnn): LSTM(512, 256, num_layers=5, dropout=0.5)" in s
    assert "(decoder): Linear(in_features=256, out_features=33278, bias=True)" in s
    assert "(drop): Dropout(p=0.5" in s


def test_initialisation():
    m = LSTMModel(ModelConfig(100, ninp=8, nhid=6, nlayers=2))
    assert m.encoder.weight.abs().max() <= 0.1 and m.decoder.weight.abs().max() <= 0.1
    assert m.encoder.weight.std() > 0.03          # uniform(-0.1, 0.1) has std 0.058
    assert torch.count_nonzero(m.decoder.bias) == 0


def test_forward_shapes_and_hidden():
    m = LSTMModel(ModelConfig(50, ninp=8, nhid=6, nlayers=3)).eval()
    h = m.init_hidden(4)
    assert [t.shape for t in h] == [(3, 4, 6), (3, 4, 6)] and not any(t.any() for t in h)
    logits, h2 = m(torch.randint(0, 50, (7, 4)), h)
    assert logits.shape == (7, 4, 50)
    m.train()
    logits, h2 = m(torch.randint(0, 50, (7, 4)), h)
    d = detach_hidden(h2)
    assert h2[0].requires_grad and not d[0].requires_grad and torch.equal(d[0], h2[0])


@pytest.mark.parametrize("bad", [dict(ntoken=0), dict(ntoken=5, nlayers=0), dict(ntoken=5, dropout=1.0)])
def test_config_validates(bad):
    with pytest.raises(ValueError, match="ModelConfig"):
        ModelConfig(**bad)


def test_state_dict_loads_strictly_into_the_tutorial_class():
    torch.manual_seed(0)
    m = LSTMModel(ModelConfig(60, ninp=10, nhid=8, nlayers=2)).eval()
    t = TutorialLSTMModel(60, 10, 8, 2).eval()
    t.load_state_dict(m.state_dict(), strict=True)
    x = torch.randint(0, 60, (5, 2))
    assert torch.equal(m(x, m.init_hidden(2))[0], t(x, t.init_hidden(2))[0])
