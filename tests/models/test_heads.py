"""ScoreModel: per-token values, the score at the last real token, padding either side."""

import torch

from genlab.models.gpt import GPT, GPTConfig
from genlab.models.heads import HeadConfig, ScoreModel, last_token_index


def _model(seed=0):
    torch.manual_seed(seed)
    return ScoreModel(GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=16))).eval()


def test_values_and_score_shapes_and_keys():
    m = _model()
    ids = torch.randint(0, 20, (3, 7))
    assert m(ids).shape == (3, 7)
    assert m.score(ids).shape == (3,)
    keys = set(m.state_dict())
    assert "head.weight" in keys and "backbone.tok_emb.weight" in keys and "head.bias" not in keys
    assert "head.bias" in ScoreModel(m.backbone, HeadConfig(bias=True)).state_dict()


def test_score_reads_last_real_token_under_right_and_left_padding():
    m = _model()
    seq = torch.randint(0, 20, (1, 5))
    alone = m.score(seq)
    right = torch.cat([seq, torch.zeros(1, 3, dtype=torch.long)], 1)
    right_mask = torch.tensor([[1] * 5 + [0] * 3])
    left = torch.cat([torch.zeros(1, 3, dtype=torch.long), seq], 1)
    left_mask = torch.tensor([[0] * 3 + [1] * 5])
    torch.testing.assert_close(m.score(right, right_mask), alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m.score(left, left_mask), alone, atol=1e-5, rtol=1e-5)
    assert last_token_index(torch.tensor([[1, 1, 0], [0, 1, 1]])).tolist() == [1, 2]


def test_score_matches_hf_sequence_classification():
    """The same weights in Hugging Face's GPT2ForSequenceClassification (one label) give the same scores."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from genlab.models.convert.gpt2 import genlab_config_to_hf, genlab_state_to_hf

    m = _model()
    cfg = m.backbone.config
    hf_cfg = {
        k: v
        for k, v in genlab_config_to_hf(cfg).items()
        if k not in ("architectures", "model_type", "dtype", "pad_token_id")
    }
    hf = GPT2ForSequenceClassification(GPT2Config(**hf_cfg, num_labels=1, pad_token_id=0)).eval()
    missing, unexpected = hf.load_state_dict(genlab_state_to_hf(m.backbone.state_dict(), cfg), strict=False)
    assert missing == ["score.weight"] and not unexpected
    hf.score.weight.data.copy_(m.head.weight)
    ids = torch.randint(1, 20, (2, 6))
    ids[1, 4:] = 0  # right padding (pad id 0)
    mask = (ids != 0).long()
    theirs = hf(ids, attention_mask=mask).logits.squeeze(-1)
    torch.testing.assert_close(m.score(ids, mask), theirs, atol=1e-5, rtol=1e-4)
