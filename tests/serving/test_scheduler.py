"""The continuous-batching engine against the plain decoding loop it must reproduce."""

import asyncio
import dataclasses

import pytest
import torch

from genlab.core.errors import ConfigError
from genlab.core.registry import preset
from genlab.generation.decode import GenerationConfig, generate
from genlab.models.gpt import GPT
from genlab.serving.scheduler import Engine, QueueFull, Request, SamplingParams


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = dataclasses.replace(preset("gpt-micro"), block_size=48, init_std=0.3)  # wide logits: no near-ties
    return GPT(cfg).eval()


def decode(ids):
    return "".join(chr(65 + i % 26) for i in ids)


def alone(model, prompt, n_tokens):
    cfg = GenerationConfig(max_new_tokens=n_tokens, temperature=0.0)
    return generate(model, [prompt], cfg)[0][0].tokens


async def collect(req):
    out = [[] for _ in range(req.n)]
    reasons = [None] * req.n
    async for ev in req.events():
        assert ev.error is None, ev.error
        out[ev.index] += [t.id for t in ev.tokens]
        if ev.finish_reason:
            reasons[ev.index] = ev.finish_reason
    return out, reasons


def test_greedy_batched_equals_each_request_alone(model):
    prompts = [[(7 * i + j) % 65 for j in range(3 + 2 * i)] for i in range(10)]
    lengths = [5 + 3 * (i % 4) for i in range(10)]

    async def main():
        engine = Engine(model, decode, eos_id=None, max_batch=4, max_queue=16)
        engine.start()
        try:
            reqs = []
            for i, (p, m) in enumerate(zip(prompts, lengths)):
                reqs.append(Request(p, SamplingParams(max_tokens=m, temperature=0.0)))
                engine.submit(reqs[-1])
                if i % 3 == 0:
                    await asyncio.sleep(0.01)  # some join while others decode
            return await asyncio.gather(*(collect(r) for r in reqs))
        finally:
            engine.stop()

    results = asyncio.run(main())
    for (out, reasons), p, m in zip(results, prompts, lengths):
        assert out[0] == alone(model, p, m)
        assert reasons == ["length"]


def test_seeded_samples_are_reproducible_and_distinct(model):
    params = SamplingParams(max_tokens=12, temperature=1.0, top_k=20, seed=5)

    async def main():
        engine = Engine(model, decode, eos_id=None, max_batch=8)
        engine.start()
        try:
            first = Request([1, 2, 3], params, n=3)
            other = Request([4, 5], SamplingParams(max_tokens=20, temperature=0.7))  # shares the batch
            engine.submit(first)
            engine.submit(other)
            a, _ = await collect(first)
            await collect(other)
            second = Request([1, 2, 3], params, n=3)
            engine.submit(second)
            b, _ = await collect(second)
            return a, b
        finally:
            engine.stop()

    a, b = asyncio.run(main())
    assert a == b
    assert len({tuple(x) for x in a}) == 3


def test_cancel_frees_the_slot_and_the_queue_is_bounded(model):
    async def main():
        engine = Engine(model, decode, eos_id=None, max_batch=1, max_queue=1)
        engine.start()
        try:
            long = Request([1, 2], SamplingParams(max_tokens=40, temperature=0.0))
            engine.submit(long)
            await long.queue.get()  # running
            waiting = Request([3], SamplingParams(max_tokens=3, temperature=0.0))
            engine.submit(waiting)
            with pytest.raises(QueueFull):
                engine.submit(Request([3], SamplingParams(max_tokens=3, temperature=0.0)))
            long.cancel()
            engine.wake()
            out, reasons = await asyncio.wait_for(collect(waiting), 30)
            with pytest.raises(ConfigError, match="exceeds the context of 48"):
                engine.submit(Request([1] * 40, SamplingParams(max_tokens=9)))
            for _ in range(500):  # the engine retires the sequence just after its last event
                if engine.idle:
                    break
                await asyncio.sleep(0.01)
            return out, reasons, engine.idle
        finally:
            engine.stop()

    out, reasons, idle = asyncio.run(main())
    assert out[0] == alone(model, [3], 3) and reasons == ["length"] and idle


def test_stop_strings_and_logprobs(model):
    ref = alone(model, [9, 9], 10)
    text = decode(ref)
    stop = text[4:6]

    async def main():
        engine = Engine(model, decode, eos_id=None)
        engine.start()
        try:
            req = Request([9, 9], SamplingParams(max_tokens=10, temperature=0.0, stop=(stop,), logprobs=2))
            engine.submit(req)
            pieces, infos, reason = [], [], None
            async for ev in req.events():
                pieces.append(ev.text)
                infos += ev.tokens
                reason = ev.finish_reason or reason
            return "".join(pieces), infos, reason
        finally:
            engine.stop()

    got, infos, reason = asyncio.run(main())
    assert got == text[: text.find(stop)] and reason == "stop"
    logp = torch.log_softmax(model(torch.tensor([[9, 9]]))[0, -1], -1)
    assert infos[0].id == ref[0] and infos[0].logprob == pytest.approx(logp[ref[0]].item(), abs=1e-5)
    assert len(infos[0].top) == 2 and infos[0].top[0][0] == ref[0]


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_tokens=4, temperature=1e-30),
        SamplingParams(max_tokens=4, temperature=2.0, top_p=1e-5, min_p=0.99, top_k=1),
        SamplingParams(max_tokens=4, temperature=1e-3, repetition_penalty=10.0, frequency_penalty=-2.0),
    ],
)
def test_extreme_sampling_parameters_still_sample(model, params):
    async def main():
        engine = Engine(model, decode, eos_id=None)
        engine.start()
        try:
            req = Request([1, 2], params, n=2)
            engine.submit(req)
            return await collect(req)
        finally:
            engine.stop()

    out, reasons = asyncio.run(main())
    assert reasons == ["length", "length"] and all(len(o) == 4 for o in out)


def test_prompts_prefilled_together_equal_each_alone(model):
    """Requests queued at once are prefilled as one left-padded batch (within the token budget)."""
    prompts = [[(3 * i + j) % 65 for j in range(1 + 5 * i)] for i in range(6)]

    async def main():
        engine = Engine(model, decode, eos_id=None, max_batch=12, prefill_tokens=60)
        reqs = [Request(p, SamplingParams(max_tokens=9, temperature=0.0), n=1 + i % 2) for i, p in enumerate(prompts)]
        for r in reqs:
            engine.submit(r)  # all waiting before the loop starts
        engine.start()
        try:
            return await asyncio.gather(*(collect(r) for r in reqs)), engine.stats.steps
        finally:
            engine.stop()

    results, steps = asyncio.run(main())
    for (out, _), p in zip(results, prompts):
        assert all(o == alone(model, p, 9) for o in out)
    assert steps < 6 * 8  # the prompts did not wait for one another's generations


def test_a_step_wakes_each_event_loop_once(model):
    """The events of one step reach their event loop in one call_soon_threadsafe, whatever the
    number of streams it holds (one wake-up, not one per token), and in order."""
    prompts = [[(5 * i + j) % 65 for j in range(4 + i)] for i in range(6)]

    async def main():
        loop = asyncio.get_running_loop()
        calls = []
        plain = loop.call_soon_threadsafe

        def counted(callback, *args):
            calls.append(len(args[0]))
            return plain(callback, *args)

        loop.call_soon_threadsafe = counted
        engine = Engine(model, decode, eos_id=None, max_batch=8)
        reqs = [Request(p, SamplingParams(max_tokens=5, temperature=0.0)) for p in prompts]
        for r in reqs:
            engine.submit(r)
        engine.start()  # all six are waiting: one prefill, then four steps
        try:
            results = await asyncio.gather(*(collect(r) for r in reqs))
        finally:
            engine.stop()
        return calls, results

    calls, results = asyncio.run(main())
    assert calls == [6] * 5
    for p, (out, reasons) in zip(prompts, results):
        assert out == [alone(model, p, 5)] and reasons == ["length"]
