import pytest
import torch

from genlab.models.outputs import ModelOutput, logits_of


def test_logits_of_a_tensor_is_the_tensor_itself():
    logits = torch.randn(2, 3, 5)
    assert logits_of(logits) is logits


def test_logits_of_a_model_output_and_its_defaults():
    logits, hidden = torch.randn(2, 3, 5), (torch.randn(2, 3, 4), torch.randn(2, 3, 4))
    out = ModelOutput(logits)
    assert logits_of(out) is logits and out.hidden_states is None and out.aux_loss is None
    full = ModelOutput(logits, hidden, torch.tensor(0.5))
    assert logits_of(full) is logits and full.hidden_states is hidden and full.aux_loss.item() == 0.5


def test_logits_of_anything_else_names_the_type():
    with pytest.raises(TypeError, match="got dict"):
        logits_of({"logits": torch.zeros(1)})
