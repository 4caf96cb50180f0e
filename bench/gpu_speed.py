"""GPU timings: LeNet-5 and LSTM train steps, FWT+IFWT and the Tucker rebuild on the device, against PyTorch CUDA.

Usage: python bench/gpu_speed.py [--repeats 7] [--out bench/results/gpu.md] [--tests "pytest summary"]
Runs on the GPU array module the engine loads (CuPy, or the module named by COMPACTNET_GPU_MODULE,
which only checks that the script runs: a stand-in's times are CPU times). Anchors that are not
installed (PyTorch, or PyTorch without CUDA) are reported as missing, never faked.
"""
import argparse
import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.speed import _ours_train_step, _row, _torch_train_step, _try_import  # noqa: E402
from bench.timing import median_seconds  # noqa: E402


def _synced(fn, sync):
    def run():
        fn()
        sync()
    return run


def _torch_cuda():
    torch = _try_import("torch")
    return torch if torch is not None and torch.cuda.is_available() else None


def bench_lenet5(xp, torch, rows, repeats, sync):
    import numpy as np
    import engine.ops as F
    from engine import Tensor, backend
    from layers.models import lenet5
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, 128)
    model = lenet5().to("gpu")
    y = backend.to_device(labels, "gpu")
    ours = median_seconds(_synced(_ours_train_step(model, Tensor(backend.to_device(x, "gpu")),
                                                   lambda out: F.cross_entropy(out, y)), sync), repeats=repeats)
    anchor = None
    if torch is not None:
        tnn = torch.nn
        tmodel = tnn.Sequential(tnn.Conv2d(1, 20, 5), tnn.MaxPool2d(2), tnn.Conv2d(20, 50, 5), tnn.MaxPool2d(2),
                                tnn.Flatten(), tnn.Linear(800, 500), tnn.ReLU(), tnn.Linear(500, 10)).cuda()
        tx, ty = torch.from_numpy(x).cuda(), torch.from_numpy(labels).cuda()
        step = _torch_train_step(torch, tmodel, tx, lambda out: tnn.functional.cross_entropy(out, ty))
        anchor = median_seconds(_synced(step, torch.cuda.synchronize), repeats=repeats)
    rows.append(_row("LeNet-5 train step, batch 128, SGD", "engine on GPU", ours, "PyTorch CUDA", anchor, "torch with CUDA"))


def bench_lstm(xp, torch, rows, repeats, sync):
    import numpy as np
    from engine import Tensor, backend
    import layers
    b, t, h = 50, 100, 128
    x = np.random.default_rng(0).standard_normal((b, t, h)).astype(np.float32)
    model = layers.LSTM(h, h).to("gpu")
    ours = median_seconds(_synced(_ours_train_step(model, Tensor(backend.to_device(x, "gpu")),
                                                   lambda out: (out[0] * out[0]).mean()), sync),
                          repeats=max(3, repeats // 2), warmup=1)
    anchor = None
    if torch is not None:
        tmodel = torch.nn.LSTM(h, h, batch_first=True).cuda()
        step = _torch_train_step(torch, tmodel, torch.from_numpy(x).cuda(), lambda out: (out[0] ** 2).mean())
        anchor = median_seconds(_synced(step, torch.cuda.synchronize), repeats=max(3, repeats // 2), warmup=1)
    rows.append(_row(f"LSTM train step, hidden {h}, T={t}, batch {b}", "engine on GPU", ours,
                     "PyTorch CUDA (cuDNN)", anchor, "torch with CUDA"))


def bench_wavelet(xp, torch, rows, repeats, sync):
    import numpy as np
    from compressors.wavelet_filters import filter_bank
    from engine.kernels import wavelet as wk
    n, levels, length = 512, 8, 6
    x = xp.asarray(np.random.default_rng(0).standard_normal((128, n)))
    bank = [xp.asarray(np.asarray(f, dtype=np.float64)) for f in filter_bank("db3")]
    sizes, lengths = wk.coefficient_lengths(n, length, levels), wk.signal_lengths(n, length, levels)[:-1]

    def ours():
        packed, _ = wk.fwt_packed(x, bank[0], bank[1], levels, keep_state=False)
        wk.ifwt_packed(packed, bank[2], bank[3], sizes, lengths, keep_state=False)
    row = _row(f"FWT + IFWT, batch 128, n={n}, L={length}, J={levels}, zero mode", "kernel (cupy)",
               median_seconds(_synced(ours, sync), repeats=repeats), "", None, "")
    rows.append({**row, "note": "no anchor: PyTorch has no wavelet transform"})


def bench_tucker(xp, torch, rows, repeats, sync):
    import numpy as np
    from engine.kernels import tucker as tk
    rng = np.random.default_rng(0)
    shape, ranks = (10, 12, 14, 14, 10), (4,) * 5
    core = rng.standard_normal(ranks)
    factors = [rng.standard_normal((m, k)) for m, k in zip(shape, ranks)]
    core_d, factors_d = xp.asarray(core), [xp.asarray(f) for f in factors]
    ours = median_seconds(_synced(lambda: tk.tucker_rebuild(core_d, factors_d), sync), repeats=repeats)
    anchor = None
    if torch is not None:
        tcore, tfactors = torch.from_numpy(core).cuda(), [torch.from_numpy(f).cuda() for f in factors]
        anchor = median_seconds(_synced(lambda: torch.einsum("abcde,ia,jb,kc,ld,me->ijklm", tcore, *tfactors),
                                        torch.cuda.synchronize), repeats=repeats)
    rows.append(_row("Tucker rebuild 10x12x14x14x10 from a 4^5 core", "kernel (cupy)", ours,
                     "PyTorch CUDA einsum", anchor, "torch with CUDA"))


def _device_name(xp):
    try:
        name = xp.cuda.runtime.getDeviceProperties(0)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception as error:   # a stand-in without device properties
        return f"unknown ({error})"


def to_markdown(rows, meta):
    lines = [f"Device: {meta['device']}; array module: {meta['module']}; torch: {meta['torch']}; "
             f"date: {meta['date']}", f"GPU tests: {meta['tests']}", f"Command: `{meta['command']}`", "",
             "| what | ours | ours ms | anchor | anchor ms | ours / anchor |", "|---|---|---|---|---|---|"]
    for r in rows:
        anchor_ms = f"{r['anchor_s'] * 1e3:.3f}" if r["anchor_s"] else "missing"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else r["note"]
        lines.append(f"| {r['what']} | {r['ours']} | {r['ours_s'] * 1e3:.3f} | {r['anchor']} | {anchor_ms} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "gpu.md"))
    p.add_argument("--tests", default="not run", help="the GPU tests' summary line, copied into the report")
    args = p.parse_args(argv)
    from engine import backend
    if not backend.gpu_available():
        sys.exit("gpu_speed.py: no GPU array module (install the gpu extra on a machine with a CUDA device)")
    xp = backend.xp_for("gpu")
    sync = xp.cuda.get_current_stream().synchronize
    torch = _torch_cuda()
    rows = []
    for bench in (bench_lenet5, bench_lstm, bench_wavelet, bench_tucker):
        bench(xp, torch, rows, args.repeats, sync)
    meta = {"device": _device_name(xp), "module": xp.__name__, "torch": getattr(torch, "__version__", "absent"),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "tests": args.tests, "command": "python bench/gpu_speed.py " + " ".join(argv or sys.argv[1:])}
    md = to_markdown(rows, meta)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write(md)
    print(md)


if __name__ == "__main__":
    main()
