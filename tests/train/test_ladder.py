import pytest
import torch
from torch import nn

from kexue.models import Bert, BertConfig
from kexue.nn import saved_activation_bytes
from kexue.train import LadderSideNetwork, ladder_parameter_count


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def backbone(layers: int = 4, hidden: int = 32) -> Bert:
    torch.manual_seed(0)
    return Bert(BertConfig(vocab_size=60, hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=4, intermediate_size=2 * hidden,
                           max_position_embeddings=16), pooler=False)


def inputs():
    torch.manual_seed(1)
    ids = torch.randint(0, 60, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    return ids, mask


def test_backbone_gets_no_gradient_and_saves_no_activation():
    net = LadderSideNetwork(backbone(), reduction=4, num_heads=2).train()
    ids, mask = inputs()
    in_backbone, saved_there = [False], []
    net.backbone.register_forward_pre_hook(lambda m, a: in_backbone.__setitem__(0, True))
    net.backbone.register_forward_hook(lambda m, a, o: in_backbone.__setitem__(0, False))

    def pack(t):
        if in_backbone[0]:
            saved_there.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = net(ids, mask)
    assert saved_there == []
    out.pow(2).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in net.backbone.parameters())
    side = [p for n, p in net.named_parameters() if not n.startswith("backbone.")]
    assert all(p.grad is not None for p in side)
    assert not net.backbone.training and net.layers[0].training  # no dropout in the backbone


def test_saved_bytes_are_far_below_full_fine_tuning():
    """Saved for backward: the ladder's inputs and the side blocks, not the backbone's."""
    bert, (ids, mask) = backbone(), inputs()
    full = saved_activation_bytes(bert, lambda: bert(ids, mask).last_hidden_state)
    net = LadderSideNetwork(backbone(), reduction=4, num_heads=2)
    side = saved_activation_bytes(net, lambda: net(ids, mask))
    assert 0 < side < full / 2


def test_forward_is_the_formula():
    """x_0 = h_0 W_0; x_i = Block_i(mu_i h_{k_i} W_i + (1 - mu_i) x_{i-1}), computed by hand."""
    net = LadderSideNetwork(backbone(layers=4), reduction=4, num_layers=2, num_heads=2).eval()
    with torch.no_grad():
        net.gates.copy_(torch.tensor([0.05, -0.2]))
    ids, mask = inputs()
    h = net.backbone(ids, mask, output_hidden_states=True).hidden_states
    assert net.taps.tolist() == [0, 2, 4]
    pad = (mask != 0)[:, None, :]
    x = h[0] @ net.down[0]
    for i, k in enumerate((2, 4)):
        mu = torch.sigmoid(net.gates[i] / 0.1)
        x, _ = net.layers[i](mu * (h[k] @ net.down[i + 1]) + (1 - mu) * x, pad)
    torch.testing.assert_close(net(ids, mask), x)
    assert net(ids, mask).shape == (3, 9, 8)


def test_parameter_count_is_the_formula_and_the_posts_share_of_base():
    net = LadderSideNetwork(backbone(layers=4, hidden=32), reduction=4, num_heads=2)
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert trainable == ladder_parameter_count(32, 8, 4)
    # the post: about 1M trainable parameters, ~1.2% of BERT-base (110M), ~0.4% of large (335M)
    assert ladder_parameter_count(768, 128, 4) / 110e6 == pytest.approx(0.012, abs=0.001)
    assert ladder_parameter_count(1024, 128, 4) / 335e6 == pytest.approx(0.004, abs=0.0005)


def test_works_on_transformers_bert_model():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=4,
                                     num_attention_heads=4, intermediate_size=64)
    torch.manual_seed(0)
    net = LadderSideNetwork(transformers.BertModel(config), reduction=4, num_layers=2,
                            num_heads=2)
    ids, mask = inputs()
    out = net(ids, mask)
    assert out.shape == (3, 9, 8) and net.taps.tolist() == [0, 2, 4]
    out.sum().backward()
    assert all(p.grad is None for p in net.backbone.parameters())


class NoStates(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 8)

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False):
        return self.embed(input_ids)


def test_bad_input():
    with pytest.raises(ValueError, match="must return hidden_states"):
        LadderSideNetwork(NoStates())
    with pytest.raises(ValueError, match="divisor of the backbone width 32, got 5"):
        LadderSideNetwork(backbone(), reduction=5)
    with pytest.raises(ValueError, match=r"num_layers must lie in \[1, 4\]"):
        LadderSideNetwork(backbone(), reduction=4, num_layers=5, num_heads=2)
    with pytest.raises(ValueError, match="num_heads must divide the side width 8, got 3"):
        LadderSideNetwork(backbone(), reduction=4, num_heads=3)
