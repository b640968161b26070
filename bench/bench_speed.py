"""Library vs plain PyTorch on MovieLens-1M-shaped workloads: SASRec and TopK SAE epochs, alternating rounds.

Run: python bench/bench_speed.py [--quick] [--rounds 3] [--only sasrec|sae] [--threads 2]

Workloads (seeded, synthetic; no data set is read):
  * SASRec: 6,040 users, 3,416 items, about 1.09M events (lognormal lengths, median 113, at least 20; Zipf
    popularity with a local Markov component, so there is something to learn beyond popularity); one 201-item
    window per user (inputs = the last 200 transitions' sources, targets their next items); d = 64, 2 blocks,
    1 head, dropout 0.2 everywhere including the attention probabilities, max_len 200, batch 128, Adam 1e-3,
    full-softmax cross-entropy at every real position.
  * TopK SAE: 1,000,000 x 64 vectors that are sparse non-negative combinations of a planted dictionary
    (4,096 unit atoms, 8-24 active per vector, Zipf atom frequencies, lognormal magnitudes) plus a shared
    offset and Gaussian noise; k = 32, 2,048 latents, batch 4,096, Adam 4e-4, constant learning rate.

Each round trains every contender from the same seed for ``--epochs`` epochs, contenders one after the
other, so that machine load hits all of them alike; the table gives wall-clock seconds per training epoch
(min / median over all epochs of all rounds) and their ratios to the plain reference, the process CPU
seconds per epoch of the whole training call (all threads, set-up included; much less sensitive to other
jobs on a shared machine than wall-clock time) and its ratio, the training loss (SASRec: mean CE
per target over the last epoch) or held-out FVU (SAE, on 65,536 vectors not trained on) after the same number
of epochs (mean over rounds), and the peak resident memory of a short training run in a fresh process (its
growth over the process's size with the data loaded).

The plain references are written here, self-contained and minimal: a SASRec like the library's (pre-LN,
right-aligned positions, tied output layer) that trims all-padding columns per batch and computes logits only
at real positions, and a TopK SAE with the sparse decode (``embedding_bag``), geometric-median ``b_dec``,
unit-norm decoder rows with the parallel gradient removed, no AuxK (nothing is dead for long at this scale).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import seqsae_lib as sl

# ---------------------------------------------------------------------------------------------- workloads


@dataclass
class SeqWorkload:
    """Training windows of the synthetic MovieLens-1M-shaped log."""

    windows: list[np.ndarray]
    """Per user, the last ``max_len + 1`` items (fewer for short users)."""
    num_items: int
    """Catalogue size (ids ``1..num_items``)."""
    events: int
    """Events in the whole log (before windowing)."""


def make_sequences(seed: int = 0, n_users: int = 6040, n_items: int = 3416, target_events: int = 1_090_000,
                   median: float = 113.0, max_len: int = 200) -> SeqWorkload:
    """Lognormal lengths (median ``median``, at least 20, total about ``target_events``), Zipf popularity;
    each next item is, with probability 0.5, a near neighbour (in popularity rank) of the previous one."""
    rng = np.random.default_rng(seed)
    sigma = math.sqrt(2 * math.log(target_events / n_users / median))  # mean/median = exp(sigma^2 / 2)
    lengths = np.maximum(20, np.round(rng.lognormal(math.log(median), sigma, n_users))).astype(int)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 1.0
    popularity /= popularity.sum()
    windows = []
    for length in lengths:
        used = min(length, max_len + 1)  # only the window is trained on; draw just that much
        base = rng.choice(n_items, size=used, p=popularity)
        local = rng.random(used) < 0.5
        steps = rng.integers(-5, 6, size=used)
        seq = base.copy()
        for t in range(1, used):
            if local[t]:
                seq[t] = min(n_items - 1, max(0, seq[t - 1] + steps[t]))
        windows.append(seq.astype(np.int64) + 1)
    return SeqWorkload(windows, n_items, int(lengths.sum()))


def make_sae_vectors(n: int, d: int = 64, n_atoms: int = 4096, seed: int = 0) -> Tensor:
    """Sparse non-negative combinations of a planted dictionary plus an offset and noise, ``(n, d)``."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(n_atoms, d, generator=g)
    atoms /= atoms.norm(dim=1, keepdim=True)
    freq = 1.0 / torch.arange(1, n_atoms + 1, dtype=torch.float64) ** 0.8
    out = torch.empty(n, d)
    offset = 0.5 * torch.randn(d, generator=g)
    for s in range(0, n, 65536):
        m = min(65536, n - s)
        active = torch.randint(8, 25, (m,), generator=g)
        idx = torch.multinomial(freq, m * 24, replacement=True, generator=g).view(m, 24)
        mags = torch.exp(0.5 * torch.randn(m, 24, generator=g)) * (torch.arange(24)[None, :] < active[:, None])
        out[s:s + m] = F.embedding_bag(idx, atoms, mode="sum", per_sample_weights=mags.float())
    out += offset + 0.05 * torch.randn(n, d, generator=g)
    return out


# ------------------------------------------------------------------------------ plain SASRec (reference)


class PlainBlock(nn.Module):
    def __init__(self, d: int, p: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(p), nn.Linear(d, d))
        self.drop, self.p = nn.Dropout(p), p

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        q, k, v = self.qkv(self.ln1(x)).unsqueeze(1).chunk(3, dim=-1)  # one head: (B, 1, L, d)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.p if self.training else 0.0)
        x = x + self.drop(self.proj(a.squeeze(1)))
        return x + self.drop(self.ff(self.ln2(x)))


class PlainSASRec(nn.Module):
    def __init__(self, num_items: int, max_len: int = 200, d: int = 64, n_blocks: int = 2, p: float = 0.2) -> None:
        super().__init__()
        self.max_len = max_len
        self.item, self.pos = nn.Embedding(num_items + 1, d, padding_idx=0), nn.Embedding(max_len, d)
        nn.init.normal_(self.item.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)
        with torch.no_grad():
            self.item.weight[0].zero_()
        self.drop = nn.Dropout(p)
        self.blocks = nn.ModuleList(PlainBlock(d, p) for _ in range(n_blocks))
        self.ln = nn.LayerNorm(d, eps=1e-6)

    def forward(self, ids: Tensor) -> Tensor:
        length = ids.shape[1]
        real = ids != 0
        keep = real.unsqueeze(-1).float()
        x = self.drop(self.item(ids) + self.pos(torch.arange(self.max_len - length, self.max_len))) * keep
        mask = torch.ones(length, length, dtype=torch.bool).tril() & real[:, None, None, :]
        mask |= torch.eye(length, dtype=torch.bool)  # padding rows attend to themselves (discarded)
        for block in self.blocks:
            x = block(x, mask) * keep
        return self.ln(x)

    def loss(self, ids: Tensor, targets: Tensor) -> Tensor:
        real = targets != 0
        h = self(ids)[real]  # logits only at real positions; column 0 (padding) is not a candidate
        return F.cross_entropy(h @ self.item.weight[1:].T, targets[real] - 1)


def train_plain_sasrec(inputs: Tensor, targets: Tensor, num_items: int, epochs: int, seed: int,
                       batch_size: int = 128, lr: float = 1e-3) -> tuple[list[float], list[float]]:
    """Per epoch: (train seconds, mean CE per target)."""
    torch.manual_seed(seed)
    model = PlainSASRec(num_items)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    secs, losses = [], []
    for _ in range(epochs):
        model.train()
        start, total, count = time.perf_counter(), 0.0, 0
        for rows in torch.randperm(len(inputs), generator=gen).split(batch_size):
            ids, tgt = inputs[rows], targets[rows]
            first = int((ids != 0).any(dim=0).nonzero()[0])  # trim all-padding columns
            ids, tgt = ids[:, first:], tgt[:, first:]
            loss = model.loss(ids, tgt)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n = int((tgt != 0).sum())
            total, count = total + loss.item() * n, count + n
        secs.append(time.perf_counter() - start)
        losses.append(total / count)
    return secs, losses


# ------------------------------------------------------------------------------- plain TopK SAE (reference)


class PlainTopK(nn.Module):
    def __init__(self, d: int, m: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.enc = nn.Linear(d, m)
        self.enc.bias.data.zero_()
        self.W_dec = nn.Parameter(self.enc.weight.data.clone())
        self.W_dec.data /= self.W_dec.data.norm(dim=1, keepdim=True)
        self.b_dec = nn.Parameter(torch.zeros(d))

    def forward(self, x: Tensor) -> Tensor:
        vals, idx = F.relu(self.enc(x - self.b_dec)).topk(self.k, sorted=False)
        return F.embedding_bag(idx, self.W_dec, mode="sum", per_sample_weights=vals) + self.b_dec


def fvu(x: Tensor, x_hat: Tensor) -> Tensor:
    return (x_hat - x).pow(2).sum() / (x - x.mean(dim=0)).pow(2).sum()


def train_plain_sae(data: Tensor, epochs: int, seed: int, batch_size: int = 4096, lr: float = 4e-4,
                    d_sae: int = 2048, k: int = 32, log: Callable[[int, float], None] | None = None,
                    ) -> tuple[PlainTopK, list[float]]:
    torch.manual_seed(seed)
    sae = PlainTopK(data.shape[1], d_sae, k)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # geometric median of a sample (Weiszfeld), as sparsify does
        sample = data[torch.randperm(len(data), generator=gen)[:16384]].double()
        median = sample.mean(dim=0)
        for _ in range(50):
            w = 1 / (sample - median).norm(dim=1).clamp_min(1e-8)
            median = (w[:, None] * sample).sum(dim=0) / w.sum()
        sae.b_dec.copy_(median)
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    secs, step = [], 0
    for _ in range(epochs):
        start = time.perf_counter()
        for rows in torch.randperm(len(data), generator=gen).split(batch_size):
            x = data[rows]
            loss = fvu(x, sae(x))
            opt.zero_grad()
            loss.backward()
            with torch.no_grad():  # unit-norm decoder rows: drop the gradient along each row, renormalise
                W, g = sae.W_dec, sae.W_dec.grad
                g -= (g * W).sum(dim=1, keepdim=True) * W
            opt.step()
            with torch.no_grad():
                sae.W_dec /= sae.W_dec.norm(dim=1, keepdim=True)
            step += 1
            if log is not None:
                log(step, loss.item())
        secs.append(time.perf_counter() - start)
    return sae, secs


# ---------------------------------------------------------------------------------------- the contenders


@dataclass
class Result:
    """Per-epoch seconds of every round, and the quality figure of every round."""

    seconds: list[float] = field(default_factory=list)
    quality: list[float] = field(default_factory=list)
    curve: list[list[float]] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    """Process CPU seconds (all threads) per epoch of the whole training call: less sensitive to other jobs."""


def windows_tensors(work: SeqWorkload, max_len: int = 200) -> tuple[Tensor, Tensor]:
    data = sl.NextItemDataset(work.windows, max_len, num_items=work.num_items)
    return data.inputs, data.targets


def library_sasrec(work: SeqWorkload, epochs: int, seed: int, threads: int, fast_dropout: bool = False,
                   **options: object) -> tuple[list[float], list[float]]:
    """``sl.train_sasrec`` with the workload's settings (validation on 64 users, outside the timed part);
    ``fast_dropout`` goes to the model, ``options`` to :class:`seqsae_lib.TrainConfig`."""
    val = [w for w in work.windows[:64]]
    split = _Split(work.num_items, work.windows, [v[:-1] for v in val], np.array([v[-1] for v in val]))
    sl.set_seed(seed)
    model = sl.SASRec(num_items=work.num_items, max_len=200, d_model=64, n_layers=2, n_heads=1, dropout=0.2,
                      attn_dropout=0.2, fast_dropout=fast_dropout)
    config = sl.TrainConfig(max_epochs=epochs, batch_size=128, lr=1e-3, patience=None, seed=seed,
                            num_threads=threads, progress=False, **options)  # type: ignore[arg-type]
    history = sl.train_sasrec(model, split, config)
    return history.train_seconds, history.train_loss


@dataclass
class _Split:
    num_items: int
    train: list[np.ndarray]
    valid_inputs: list[np.ndarray]
    valid_targets: np.ndarray


SAE_SETTINGS = dict(d_sae=2048, k=32, batch_size=4096, lr=4e-4)


def library_sae(data: Tensor, held: Tensor, epochs: int, seed: int, threads: int, sae: dict, train: dict,
                ) -> tuple[float, float, list[float]]:
    """``sl.train_sae``: (seconds per epoch, held-out FVU, training FVU per logged step)."""
    config = sl.SAEConfig(d_in=data.shape[1], d_sae=SAE_SETTINGS["d_sae"], kind="topk", k=SAE_SETTINGS["k"],
                          seed=seed, **sae)
    tc = sl.SAETrainConfig(**{"batch_size": SAE_SETTINGS["batch_size"], "lr": SAE_SETTINGS["lr"], "num_epochs": epochs,
                              "seed": seed, "num_threads": threads, "progress": False, **train})
    start = time.perf_counter()
    model, history = sl.train_sae(data, config, tc)
    seconds = (time.perf_counter() - start) / epochs
    with torch.no_grad():
        quality = float(fvu(held, model(held).x_hat))
    return seconds, quality, list(history.fvu)


SASREC_CONTENDERS: dict[str, Callable[..., tuple[list[float], list[float]]]] = {
    "seqsae train_sasrec, fused_loss + fast_dropout (length_groups 4)":
        lambda w, e, s, t: library_sasrec(w, e, s, t, fused_loss=True, fast_dropout=True),
    "seqsae train_sasrec, fused_loss (length_groups 4)":
        lambda w, e, s, t: library_sasrec(w, e, s, t, fused_loss=True),
    "seqsae train_sasrec, neither (F.cross_entropy, nn.Dropout; length_groups 4)":
        lambda w, e, s, t: library_sasrec(w, e, s, t, fused_loss=False),
    "plain PyTorch (trims padding per batch, CE only at real positions)":
        lambda w, e, s, t: train_plain_sasrec(*windows_tensors(w), w.num_items, e, s),
}
"""Name -> function(workload, epochs, seed, threads) -> (seconds per epoch, loss per epoch). The last is the reference."""

SAE_DEFAULTS = dict(sae={}, train={"warmup_steps": 0, "decay_start": 1.0})
"""The library's TopK SAE with its defaults (the encoder's initial scale fitted to the data, the rescaled AuxK at
1/4; no latent dies on this workload, so AuxK is idle here), at the workload's constant lr 4e-4."""

SAE_UNIT_START = dict(sae=dict(sl.sae.UNIT_START_SAE),
                      train={"warmup_steps": 0, "decay_start": 1.0, **sl.sae.UNIT_START_TRAIN})
"""The same with the previous defaults: the encoder started as the unit-norm decoder's transpose, plain AuxK."""

SAE_CONTENDERS: dict[str, Callable[..., tuple[float, float, list[float]]]] = {
    "seqsae train_sae, TopK, defaults (fitted encoder start, rescaled AuxK 1/4)":
        lambda x, h, e, s, t: library_sae(x, h, e, s, t, **SAE_DEFAULTS),
    "seqsae train_sae, TopK, previous defaults (unit-norm encoder start)":
        lambda x, h, e, s, t: library_sae(x, h, e, s, t, **SAE_UNIT_START),
    "plain TopK, sparse decode (embedding_bag)": None,  # type: ignore[dict-item]
}


def plain_sae(data: Tensor, held: Tensor, epochs: int, seed: int, threads: int) -> tuple[float, float, list[float]]:
    curve: list[float] = []
    sae, secs = train_plain_sae(data, epochs, seed, batch_size=SAE_SETTINGS["batch_size"], lr=SAE_SETTINGS["lr"],
                                d_sae=SAE_SETTINGS["d_sae"], k=SAE_SETTINGS["k"],
                                log=lambda step, value: curve.append(value))
    with torch.no_grad():
        quality = float(fvu(held, sae(held)))
    return sum(secs) / epochs, quality, curve


PLAIN_SAE = "plain TopK, sparse decode (embedding_bag)"
SPARSIFY_SAE = "EleutherAI sparsify 1.3.3 SparseCoder (its trainer's step, loss_fn fvu)"
SAE_CONTENDERS[PLAIN_SAE] = plain_sae


def sparsify_sae(data: Tensor, held: Tensor, epochs: int, seed: int, threads: int) -> tuple[float, float, list[float]]:
    """EleutherAI sparsify's ``SparseCoder`` (optional: ``--sparsify``, from a separate environment; not a
    dependency) in a loop doing what sparsify's ``Trainer`` does per step with ``loss_fn="fvu"`` and its
    defaults (``auxk_alpha = 0``): ``b_dec`` set to the first batch's mean, decoder rows renormalised before
    each forward pass, loss = FVU against the batch's variance, the gradient along each decoder row removed,
    an Adam step, the per-latent "tokens since fired" counters updated. Its ``fused_encoder`` (a TopK encoder
    with an ``index_add`` backward) and ``embedding_bag`` decode run on CPU. Same lr, batches and k as the others."""
    from sparsify import SparseCoder, SparseCoderConfig  # type: ignore[import-not-found]

    torch.manual_seed(seed)
    sae = SparseCoder(data.shape[1], SparseCoderConfig(num_latents=SAE_SETTINGS["d_sae"], k=SAE_SETTINGS["k"]))
    opt = torch.optim.Adam(sae.parameters(), lr=SAE_SETTINGS["lr"])
    since_fired = torch.zeros(SAE_SETTINGS["d_sae"], dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    curve, secs, step = [], [], 0
    for _ in range(epochs):
        start = time.perf_counter()
        for rows in torch.randperm(len(data), generator=gen).split(SAE_SETTINGS["batch_size"]):
            x = data[rows]
            if step == 0:
                sae.b_dec.data = x.mean(0)
            sae.set_decoder_norm_to_unit_norm()
            out = sae(x, total_variance=(x - x.mean(0)).pow(2).sum())
            did_fire = torch.zeros(SAE_SETTINGS["d_sae"], dtype=torch.bool)
            did_fire[out.latent_indices.flatten()] = True
            out.fvu.backward()
            sae.remove_gradient_parallel_to_decoder_directions()
            opt.step()
            opt.zero_grad()
            with torch.no_grad():
                since_fired += len(x)
                since_fired[did_fire] = 0
            curve.append(float(out.fvu.detach()))
            step += 1
        secs.append(time.perf_counter() - start)
    with torch.no_grad():
        quality = float(fvu(held, sae(held).sae_out))
    return sum(secs) / epochs, quality, curve


# ----------------------------------------------------------------------------------------------- memory


def _rss_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return -1


def memory_child(kind: str, index: int, quick: bool) -> None:
    """In a fresh process: build the data, then train contender ``index`` briefly; print the RSS growth (MiB)."""
    torch.set_num_threads(2)
    if kind == "sasrec":
        work = make_sequences(0, n_users=1280)  # 10 batches
        name = list(SASREC_CONTENDERS)[index]
        before = _rss_kib("VmRSS")
        SASREC_CONTENDERS[name](work, 1, 0, 2)
    else:
        data = make_sae_vectors(10 * SAE_SETTINGS["batch_size"] + 4096, seed=0)
        train, held = data[:-4096], data[-4096:]
        name = list(SAE_CONTENDERS)[index]
        before = _rss_kib("VmRSS")
        SAE_CONTENDERS[name](train, held, 1, 0, 2)
    print(json.dumps({"peak_mib": (_rss_kib("VmHWM") - before) / 1024}))


def peak_memory(kind: str, index: int, with_sparsify: bool) -> float:
    extra = ["--sparsify"] if with_sparsify else []
    out = subprocess.run([sys.executable, __file__, "--memory-child", kind, str(index), *extra], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"])


# ------------------------------------------------------------------------------------------------- main


def _table(title: str, rows: dict[str, Result], quality: str, memory: dict[str, float], reference: str,
           peer: str | None = None) -> None:
    """Markdown table: ratios to ``reference`` (the plain implementation) and, if given, to ``peer``."""
    names = list(rows)
    ref = statistics.median(rows[reference].seconds)
    ref_min = min(rows[reference].seconds)
    ref_cpu = statistics.median(rows[reference].cpu)
    peer_cols = f" vs {peer.split(' ')[0]} {peer.split(' ')[1]} (median / CPU) |" if peer else ""
    print(f"\n| {title} | min / median s | vs plain (min / median) | CPU s | vs plain (CPU) |{peer_cols} {quality} | peak memory |")
    print("|---|---|---|---|---|" + ("---|" if peer else "") + "---|---|")
    for name in names:
        r = rows[name]
        med = statistics.median(r.seconds)
        q = statistics.fmean(r.quality)
        spread = f" ± {statistics.stdev(r.quality):.4f}" if len(r.quality) > 1 else ""
        mem = f"{memory[name]:.0f} MiB" if name in memory else "-"
        cpu = statistics.median(r.cpu)
        vs_peer = ""
        if peer:
            vs_peer = f" {med / statistics.median(rows[peer].seconds):.2f} / {cpu / statistics.median(rows[peer].cpu):.2f} |"
        print(f"| {name} | {min(r.seconds):.1f} / {med:.1f} | {min(r.seconds) / ref_min:.2f} / {med / ref:.2f} "
              f"| {cpu:.1f} | {cpu / ref_cpu:.2f} |{vs_peer} {q:.4f}{spread} | {mem} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,510 users and 131,072 SAE vectors (development)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=["sasrec", "sae"], default=None)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--sparsify", action="store_true",
                        help="also time EleutherAI sparsify's SparseCoder (needs `sparsify` importable: not a dependency)")
    parser.add_argument("--memory-child", nargs=2, metavar=("KIND", "INDEX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sparsify:
        SAE_CONTENDERS[SPARSIFY_SAE] = sparsify_sae
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]), args.quick)
        return
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds x {args.epochs} epochs"
          f"{' (quick)' if args.quick else ''}")

    if args.only in (None, "sasrec"):
        work = make_sequences(0, n_users=1510 if args.quick else 6040,
                              target_events=272_500 if args.quick else 1_090_000)
        print(f"SASRec workload: {len(work.windows):,} users, {work.num_items:,} items, {work.events:,} events, "
              f"{sum(min(len(w) - 1, 200) for w in work.windows):,} training targets")
        results = {name: Result() for name in SASREC_CONTENDERS}
        for r in range(args.rounds):
            for name, run in SASREC_CONTENDERS.items():
                cpu = time.process_time()
                secs, losses = run(work, args.epochs, r, args.threads)
                results[name].cpu.append((time.process_time() - cpu) / args.epochs)
                results[name].seconds += secs
                results[name].quality.append(losses[-1])
                print(f"  round {r}: {name}: {', '.join(f'{s:.1f}' for s in secs)} s, "
                      f"loss per epoch {', '.join(f'{v:.4f}' for v in losses)}", flush=True)
        memory = {} if args.no_memory else {n: peak_memory("sasrec", i, False) for i, n in enumerate(SASREC_CONTENDERS)}
        _table("SASRec epoch", results, f"loss after {args.epochs} epochs", memory, reference=list(SASREC_CONTENDERS)[-1])

    if args.only in (None, "sae"):
        n = 131_072 if args.quick else 1_000_000
        data = make_sae_vectors(n + 65_536, seed=0)
        train, held = data[:n], data[n:]
        print(f"\nSAE workload: {n:,} x {data.shape[1]} planted-dictionary vectors (+65,536 held out for FVU)")
        results = {name: Result() for name in SAE_CONTENDERS}
        for r in range(args.rounds):
            for name, run in SAE_CONTENDERS.items():
                cpu = time.process_time()
                sec, quality, curve = run(train, held, args.epochs, r, args.threads)
                results[name].cpu.append((time.process_time() - cpu) / args.epochs)
                results[name].seconds.append(sec)
                results[name].quality.append(quality)
                results[name].curve.append(curve)
                every = max(1, len(curve) // 8)
                print(f"  round {r}: {name}: {sec:.1f} s/epoch, held-out FVU {quality:.4f}; training FVU "
                      f"{', '.join(f'{v:.3f}' for v in curve[every - 1::every])}", flush=True)
        memory = {} if args.no_memory else {n_: peak_memory("sae", i, args.sparsify) for i, n_ in enumerate(SAE_CONTENDERS)}
        _table("TopK SAE epoch", results, f"held-out FVU after {args.epochs} epochs", memory, reference=PLAIN_SAE,
               peer=SPARSIFY_SAE if args.sparsify else None)


if __name__ == "__main__":
    main()
