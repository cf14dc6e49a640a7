"""Generation speed: ofac's tiny preset versus Hugging Face BartForConditionalGeneration.generate
with a model of the same width, depth, heads, FFN and vocabulary (random init), same source
length (64), both forced to the same number of decoder steps (32: min = max length), greedy and
beam 5, at batch 1 (per-example latency) and batch 16 (throughput), in the same run.

Both run in this process, interleaved, best of --repeat timings each.

  python benchmarks/generate_speed.py [--repeat 5] [--threads 2]   (needs `pip install transformers`)

Last line: RESULT generate_speed ratio=<the smallest of the four speed-ups ofac/HF>
"""
from __future__ import annotations

import argparse
import time

from train_throughput import DIMS, VOCAB  # the same model dimensions as the training benchmark

SRC, STEPS = 64, 32


def ofac_runner(batch_size: int, beam: int):
    import torch

    from ofac.runtime.data.collate import Batch
    from ofac.runtime.data.targets import TokenBatch
    from ofac.runtime.generate.eager import GenerateConfig, generate
    from ofac.runtime.model.config import ModelConfig
    from ofac.runtime.model.network import EncoderDecoder
    from ofac.runtime.vocab.tokenizer import BOS

    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(vocab_size=VOCAB, dropout=0.0, **DIMS)).eval()
    g = torch.Generator().manual_seed(1)
    src = torch.randint(5, VOCAB, (batch_size, SRC), generator=g)
    B = batch_size
    decoder = TokenBatch(torch.full((B, 1), BOS), torch.full((B, 1), BOS), torch.zeros(B, 1, dtype=torch.bool),
                         torch.zeros(B, dtype=torch.long))
    batch = Batch(["bench"] * B, {"text": src}, {"text": torch.full((B,), SRC)}, [[("text", i)] for i in range(B)],
                  "tokens", decoder)
    # STEPS decoder steps: STEPS - 1 generated tokens, then the EOS that max_len forces
    cfg = GenerateConfig(beam=beam, min_len=STEPS - 1, max_len=STEPS - 1, len_penalty=1.0)

    def run():
        out = generate(model, batch, cfg)
        assert all(len(h[0].tokens) == STEPS - 1 for h in out)
    return run


def hf_runner(batch_size: int, beam: int):
    import torch
    from train_throughput import bart_config  # benchmarks/ is this script's folder
    from transformers import BartForConditionalGeneration, GenerationConfig

    torch.manual_seed(0)
    model = BartForConditionalGeneration(bart_config(VOCAB, DIMS, dropout=0.0)).eval()
    g = torch.Generator().manual_seed(1)
    src = torch.randint(5, VOCAB, (batch_size, SRC), generator=g)
    gen = GenerationConfig(num_beams=beam, do_sample=False, max_new_tokens=STEPS, min_new_tokens=STEPS,
                           no_repeat_ngram_size=0, length_penalty=1.0, early_stopping=False, use_cache=True,
                           forced_bos_token_id=None, forced_eos_token_id=None, decoder_start_token_id=2,
                           bos_token_id=0, eos_token_id=2, pad_token_id=1)

    def run():
        with torch.no_grad():
            out = model.generate(input_ids=src, attention_mask=torch.ones_like(src), generation_config=gen)
        assert out.shape[1] == STEPS + 1  # the start token and STEPS generated
    return run


def best_time(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    ratios = {}
    for beam, mode in ((1, "greedy"), (5, "beam5")):
        for batch in (1, 16):
            ofac_fn, hf_fn = ofac_runner(batch, beam), hf_runner(batch, beam)
            t_ofac, t_hf = [], []
            for _ in range(2):  # interleaved rounds, best of all
                t_ofac.append(best_time(ofac_fn, args.repeat))
                t_hf.append(best_time(hf_fn, args.repeat))
            a, b = min(t_ofac), min(t_hf)
            key = f"{mode}_b{batch}"
            ratios[key] = b / a
            what = "latency/example" if batch == 1 else "examples/s"
            ofac_v, hf_v = (a * 1000, b * 1000) if batch == 1 else (batch / a, batch / b)
            unit = "ms" if batch == 1 else "ex/s"
            print(f"{key:10s} {what:16s} ofac {ofac_v:8.1f} {unit}  HF generate {hf_v:8.1f} {unit}  "
                  f"speed-up {ratios[key]:.2f}x")
    low = min(ratios.values())
    print(f"target: >= 1.3x at every point -> smallest {low:.2f}x")
    print("RESULT generate_speed ratio=%.2f %s" % (low, " ".join(f"{k}={v:.2f}" for k, v in ratios.items())))


if __name__ == "__main__":
    main()
