import pytest
import torch
import torch.nn.functional as F

from genlab.core.registry import preset, presets
from genlab.data.images import load_digits, to_float
from genlab.models import build_model
from genlab.models.cnn import CNN, CNNConfig

CNN_PRESETS = [n for n in presets() if isinstance(preset(n), CNNConfig)]


def test_every_cnn_preset_is_covered():
    assert {"lenet-fashion", "cnn-fashion", "resnet-fashion", "cnn-digits"} <= set(CNN_PRESETS)


@pytest.mark.parametrize("name", CNN_PRESETS)
def test_feature_maps_of_every_stage(name):
    cfg = preset(name)
    model = build_model(cfg).eval()
    x = torch.rand(2, 1, cfg.image_size, cfg.image_size)
    maps = model.features(x)
    stages = [k for k in maps if k.startswith("stage")]
    assert len(stages) == len(cfg.widths)
    for i, k in enumerate(stages):
        assert maps[k].shape[:2] == (2, cfg.widths[i]) and maps[k].shape[-1] < cfg.image_size
    torch.testing.assert_close(maps["logits"], model(x))


@pytest.mark.parametrize("arch", ["lenet", "vgg", "resnet"])
def test_loss_goes_down_on_digits(arch):
    torch.manual_seed(0)
    images, labels = load_digits("train")
    x, y = to_float(torch.from_numpy(images[:256])), torch.from_numpy(labels[:256].astype("int64"))
    model = CNN(CNNConfig(arch=arch, image_size=8, widths=[8, 16], hidden=32, dropout=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_wrong_image_shape_or_channels_is_a_clear_error():
    model = build_model(preset("cnn-fashion"))
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1, 28, 28\)"):
        model(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="expected images"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="arch"):
        CNNConfig(arch="alexnet9")


@pytest.mark.parametrize("name", CNN_PRESETS)
def test_embed_is_the_input_of_the_last_layer(name):
    cfg = preset(name)
    model = build_model(cfg).eval()
    x = torch.rand(4, 1, cfg.image_size, cfg.image_size)
    e = model.embed(x)
    assert e.dim() == 2 and e.size(0) == 4
    torch.testing.assert_close(model.head[-1](e), model(x))
