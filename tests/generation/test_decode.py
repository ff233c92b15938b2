"""The decoding engine: the cached path against the plain one, batching, beams, stops, streaming."""

import dataclasses

import pytest
import torch

from genlab.core.errors import ConfigError
from genlab.core.registry import preset
from genlab.generation.decode import GenerationConfig, TextTracker, beam_search, generate, left_pad, stream
from genlab.models.gpt import GPT

VARIANTS = {"learned": {"pos": "learned"}, "rope": {"pos": "rope"}, "alibi-mqa": {"pos": "alibi", "n_kv_head": 1}}


@pytest.fixture(scope="module", params=list(VARIANTS))
def model(request):
    torch.manual_seed(0)
    cfg = dataclasses.replace(preset("gpt-micro"), block_size=48, **VARIANTS[request.param])
    return GPT(cfg).eval()


def test_cached_and_uncached_logits_equal_at_every_step(model):
    ids = torch.randint(0, 65, (2, 7))
    cache = model.make_cache(2, 48)
    assert model(ids, cache=cache).shape == (2, 7, 65)
    seq = ids
    for _ in range(20):
        nxt = torch.randint(0, 65, (2, 1))
        seq = torch.cat([seq, nxt], 1)
        cached = model(nxt, cache=cache)[:, -1]
        full = model(seq)[:, -1]
        torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
    assert cache.length == seq.size(1)


def test_cache_is_preallocated_once(model):
    cache = model.make_cache(1, 40)
    k = cache.k
    cache_ptr = k.data_ptr()
    generate(model, [[1, 2, 3]], GenerationConfig(max_new_tokens=5, temperature=0))
    model(torch.tensor([[1, 2, 3]]), cache=cache)
    model(torch.tensor([[4]]), cache=cache)
    kv_heads = model.config.kv_heads
    assert cache.k.data_ptr() == cache_ptr and cache.nbytes == 2 * 2 * 1 * kv_heads * 40 * 16 * 4


def test_generation_with_and_without_cache_agree(model):
    cfg = GenerationConfig(max_new_tokens=25, temperature=0)
    a = generate(model, [[5, 6, 7]], cfg)[0][0].tokens
    b = generate(model, [[5, 6, 7]], dataclasses.replace(cfg, use_cache=False))[0][0].tokens
    assert a == b and len(a) == 25


def test_greedy_is_argmax_decoding(model):
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    ref = ids
    for _ in range(10):
        ref = torch.cat([ref, model(ref)[:, -1].argmax(-1, keepdim=True)], 1)
    out = generate(model, [ids[0].tolist()], GenerationConfig(max_new_tokens=10, temperature=0))[0][0]
    assert out.tokens == ref[0, 5:].tolist()


def test_left_padded_batch_equals_one_by_one(model):
    prompts = [[1, 2, 3, 4, 5, 6, 7], [8, 9], [10, 11, 12, 13]]
    ids, mask = left_pad(prompts)
    assert ids.shape == (3, 7) and mask[1].tolist() == [0, 0, 0, 0, 0, 1, 1]
    cfg = GenerationConfig(max_new_tokens=12, temperature=0, logprobs=True)
    batched = [g[0] for g in generate(model, prompts, cfg)]
    for p, b in zip(prompts, batched):
        alone = generate(model, [p], cfg)[0][0]
        assert alone.tokens == b.tokens
        torch.testing.assert_close(torch.tensor(alone.logprobs), torch.tensor(b.logprobs), atol=1e-5, rtol=0)


def test_seeded_sampling_is_reproducible_and_samples_differ(model):
    cfg = GenerationConfig(max_new_tokens=15, temperature=1.0, num_return_sequences=3, seed=7)
    a = [g.tokens for g in generate(model, [[1, 2]], cfg)[0]]
    b = [g.tokens for g in generate(model, [[1, 2]], cfg)[0]]
    assert a == b and len({tuple(t) for t in a}) > 1


def rows_fed(model):
    """Record the number of rows of every forward call of ``model``; returns the list."""
    rows: list[int] = []
    handle = model.register_forward_pre_hook(lambda mod, args, kwargs: rows.append(args[0].size(0)), with_kwargs=True)
    return rows, handle


@pytest.mark.parametrize("use_cache", [True, False])
def test_samples_share_one_prefill_and_equal_n_prefilled_copies(model, use_cache):
    prompts = [[1, 2, 3, 4], [5, 6]]
    cfg = GenerationConfig(max_new_tokens=12, temperature=1.0, top_k=10, num_return_sequences=3, seed=11, logprobs=True)
    cfg = dataclasses.replace(cfg, use_cache=use_cache)
    rows, handle = rows_fed(model)
    try:
        shared = [g for gens in generate(model, prompts, cfg) for g in gens]
    finally:
        handle.remove()
    assert rows[0] == 2 and set(rows[1:]) == {6}  # the prompts ran once: 2 rows, not 2 x 3
    # The reference prefills n copies of each prompt (what decoding did before): same tokens.
    copies = [p for p in prompts for _ in range(3)]
    ref = [gens[0] for gens in generate(model, copies, dataclasses.replace(cfg, num_return_sequences=1))]
    assert [g.tokens for g in shared] == [g.tokens for g in ref]
    for a, b in zip(shared, ref):
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5, rtol=0)
    assert [g.prompt_index for g in shared] == [0, 0, 0, 1, 1, 1]


def test_beams_share_one_prefill(model):
    rows, handle = rows_fed(model)
    try:
        beam_search(model, [[1, 2, 3], [4, 5]], GenerationConfig(max_new_tokens=4, num_beams=3))
    finally:
        handle.remove()
    assert rows[0] == 2 and set(rows[1:]) == {6}


def test_logprobs_and_alternatives(model):
    g = generate(model, [[1, 2]], GenerationConfig(max_new_tokens=4, temperature=0, top_logprobs=3))[0][0]
    assert len(g.logprobs) == 4 and len(g.top_logprobs[0]) == 3
    best_token, best_lp = g.top_logprobs[0][0]
    assert best_token == g.tokens[0] and best_lp == pytest.approx(g.logprobs[0])


def test_eos_stops_each_row(model):
    greedy = generate(model, [[1, 2]], GenerationConfig(max_new_tokens=10, temperature=0))[0][0].tokens
    eos = greedy[3]
    g = generate(model, [[1, 2]], GenerationConfig(max_new_tokens=10, temperature=0, eos_id=eos))[0][0]
    assert g.finish_reason == "eos" and g.tokens == greedy[: greedy.index(eos)]


def test_banned_tokens_and_penalties(model):
    greedy = generate(model, [[1, 2]], GenerationConfig(max_new_tokens=10, temperature=0))[0][0].tokens
    banned = generate(model, [[1, 2]], GenerationConfig(max_new_tokens=10, temperature=0, banned_tokens=(greedy[0],)))
    assert greedy[0] not in banned[0][0].tokens
    pen = GenerationConfig(max_new_tokens=30, temperature=0, presence_penalty=100.0)
    tokens = generate(model, [[1]], pen)[0][0].tokens
    assert len(set(tokens)) == len(tokens)  # a huge presence penalty forbids any repeat


def test_beam_search_one_beam_is_greedy_and_beams_score_at_least_greedy(model):
    greedy = generate(model, [[1, 2, 3]], GenerationConfig(max_new_tokens=8, temperature=0, logprobs=True))[0][0]
    one = beam_search(model, [[1, 2, 3]], GenerationConfig(max_new_tokens=8, num_beams=1))[0][0]
    assert one.tokens == greedy.tokens
    cfg = GenerationConfig(max_new_tokens=8, num_beams=4, num_return_sequences=3, length_penalty=0.0)
    best = beam_search(model, [[1, 2, 3]], cfg)[0]
    assert len(best) == 3 and best[0].score >= best[1].score >= best[2].score
    assert best[0].score >= sum(greedy.logprobs) - 1e-4


def test_beam_search_batched_equals_alone(model):
    cfg = GenerationConfig(max_new_tokens=6, num_beams=3, num_return_sequences=2)
    both = beam_search(model, [[1, 2, 3, 4], [9]], cfg)
    for i, p in enumerate([[1, 2, 3, 4], [9]]):
        alone = beam_search(model, [p], cfg)[0]
        assert [g.tokens for g in alone] == [g.tokens for g in both[i]]


def chars(ids):
    return "".join(chr(97 + i % 26) for i in ids)


def test_stop_sequence_split_across_tokens_is_caught():
    tracker = TextTracker(lambda ids: "".join(["Hel", "lo\nEN", "D!", "more"][i] for i in ids), stop=("\nEND",))
    pieces = [tracker.push(i) for i in range(4)]
    assert tracker.stopped and "".join(pieces) + tracker.finish() == "Hello"


def test_stream_pieces_concatenate_to_the_full_text(model):
    cfg = GenerationConfig(max_new_tokens=30, temperature=0.9, seed=3)
    full = generate(model, [[1, 2]], cfg, decode=chars)[0][0].text
    assert "".join(stream(model, [1, 2], cfg, chars)) == full


def test_stream_never_shows_half_a_utf8_character():
    data = "héllo wörld ✓".encode()

    def decode(ids):  # one byte per token, like a byte-level BPE with no merges
        return bytes(data[i] for i in ids).decode("utf-8", errors="replace")

    tracker = TextTracker(decode)
    pieces = [tracker.push(i) for i in range(len(data))]
    assert "\ufffd" not in "".join(pieces) and "".join(pieces) + tracker.finish() == data.decode()


def test_stop_strings_with_generate(model):
    cfg = GenerationConfig(max_new_tokens=40, temperature=0)
    text = generate(model, [[1]], cfg, decode=chars)[0][0].text
    stop = text[10:12]
    g = generate(model, [[1]], dataclasses.replace(cfg, stop=(stop,)), decode=chars)[0][0]
    assert g.finish_reason == "stop" and g.text == text[: text.find(stop)]


def test_context_policies(model):
    long = list(range(40))
    with pytest.raises(ConfigError, match="exceeds the model's context of 48"):
        generate(model, [long], GenerationConfig(max_new_tokens=10))
    cfg = GenerationConfig(max_new_tokens=20, temperature=0, context="window")
    a = generate(model, [long], cfg)[0][0].tokens
    b = generate(model, [long], dataclasses.replace(cfg, use_cache=False))[0][0].tokens
    assert a == b and len(a) == 20


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("temperature", -1.0, "temperature"),
        ("top_p", 0.0, "top-p"),
        ("top_p", 1.5, "top-p"),
        ("top_k", -1, "top-k"),
        ("max_new_tokens", 0, "max-new-tokens"),
        ("num_beams", 0, "beams"),
        ("context", "wrap", "context"),
    ],
)
def test_bad_settings(model, field, value, match):
    with pytest.raises(ConfigError, match=match):
        generate(model, [[1]], dataclasses.replace(GenerationConfig(), **{field: value}))


def test_empty_prompt_needs_a_start_token(model):
    with pytest.raises(ConfigError, match="empty"):
        generate(model, [[]], GenerationConfig(max_new_tokens=2))
    assert len(generate(model, [[]], GenerationConfig(max_new_tokens=2, bos_id=0))[0][0].tokens) == 2
