"""The benchmark: each scratch kernel equals its optimized counterpart (values and
gradients), the timer synchronises and summarises correctly, and the command runs."""

import json

import pytest
import torch
import torch.nn.functional as F
import torchaudio
from hypothesis import given, settings
from hypothesis import strategies as st
from test_train import one_thread  # noqa: F401 (autouse fixture)

from mmcourse.bench import CASES, format_table, measure, reference, run_suite
from mmcourse.bench import timing as timing_mod
from mmcourse.cli import main as cli_main

D = torch.float64


def rand(*shape, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=D).requires_grad_(grad)


# --- attention -------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 3), h=st.integers(1, 3), t_q=st.integers(1, 6), t_k=st.integers(1, 6),
       d=st.integers(1, 5), seed=st.integers(0, 10_000), masked=st.booleans())
def test_attention_equals_sdpa(b, h, t_q, t_k, d, seed, masked):
    q, k, v = rand(b, h, t_q, d, seed=seed), rand(b, h, t_k, d, seed=seed + 1), rand(b, h, t_k, d, seed=seed + 2)
    mask = None
    if masked:  # a padding mask (B, 1, 1, T_k) that keeps at least the first key
        lengths = torch.randint(1, t_k + 1, (b,), generator=torch.Generator().manual_seed(seed))
        mask = (torch.arange(t_k)[None, :] < lengths[:, None])[:, None, None, :]
    ours = reference.attention(q, k, v, mask=mask)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(ours, theirs)
    g = torch.randn_like(ours)
    grads = torch.autograd.grad(ours, (q, k, v), g)
    ref_grads = torch.autograd.grad(theirs, (q, k, v), g)
    for a, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, r)


def test_attention_causal_and_gradcheck():
    q, k, v = rand(2, 2, 5, 3), rand(2, 2, 5, 3, seed=1), rand(2, 2, 5, 3, seed=2)
    torch.testing.assert_close(reference.attention(q, k, v, causal=True),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert torch.autograd.gradcheck(lambda a, b, c: reference.attention(a, b, c, causal=True), (q, k, v))
    with pytest.raises(ValueError, match=r"expected q, k, v of shape \(B, H, T, d_k\)"):
        reference.attention(q[0], k, v)


def test_softmax_is_stable():
    x = torch.tensor([[1000.0, 1000.0, -1000.0]], dtype=D)
    torch.testing.assert_close(reference.softmax(x), torch.softmax(x, -1))


# --- convolution -----------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 2), c_in=st.integers(1, 3), c_out=st.integers(1, 3), h=st.integers(3, 8),
       w=st.integers(3, 8), k_h=st.integers(1, 3), k_w=st.integers(1, 3), stride=st.integers(1, 3),
       padding=st.integers(0, 2), bias=st.booleans(), seed=st.integers(0, 10_000))
def test_conv2d_equals_torch(b, c_in, c_out, h, w, k_h, k_w, stride, padding, bias, seed):
    x = rand(b, c_in, h, w, seed=seed)
    weight = rand(c_out, c_in, k_h, k_w, seed=seed + 1)
    bb = rand(c_out, seed=seed + 2) if bias else None
    ours = reference.conv2d(x, weight, bb, stride=stride, padding=padding)
    theirs = F.conv2d(x, weight, bb, stride=stride, padding=padding)
    torch.testing.assert_close(ours, theirs)
    inputs = (x, weight) + ((bb,) if bias else ())
    g = torch.randn_like(ours)
    for a, r in zip(torch.autograd.grad(ours, inputs, g), torch.autograd.grad(theirs, inputs, g), strict=True):
        torch.testing.assert_close(a, r)


def test_conv2d_errors():
    with pytest.raises(ValueError, match=r"expected x of shape \(B, C, H, W\)"):
        reference.conv2d(rand(3, 4, 4), rand(1, 3, 2, 2))
    with pytest.raises(ValueError, match="x has 3 channels but weight expects 2"):
        reference.conv2d(rand(1, 3, 4, 4), rand(1, 2, 2, 2))


# --- LSTM ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("b", "t", "d", "hidden"), [(1, 1, 1, 1), (3, 7, 4, 5), (2, 12, 6, 3)])
def test_lstm_equals_nn_lstm(b, t, d, hidden):
    torch.manual_seed(t)
    lstm = torch.nn.LSTM(d, hidden, batch_first=True).double()
    x = rand(b, t, d, seed=t)
    h0, c0 = rand(1, b, hidden, seed=1), rand(1, b, hidden, seed=2)
    weights = (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
    out, (h, c) = reference.lstm(x, *weights, state=(h0[0], c0[0]))
    ref_out, (ref_h, ref_c) = lstm(x, (h0, c0))
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(h, ref_h[0])
    torch.testing.assert_close(c, ref_c[0])
    g = torch.randn_like(out)
    inputs = (x, *weights)
    for a, r in zip(torch.autograd.grad(out, inputs, g), torch.autograd.grad(ref_out, inputs, g), strict=True):
        torch.testing.assert_close(a, r)


def test_lstm_gradcheck_and_errors():
    w = (rand(8, 3, seed=1), rand(8, 2, seed=2), rand(8, seed=3), rand(8, seed=4))
    assert torch.autograd.gradcheck(lambda x, *ws: reference.lstm(x, *ws)[0], (rand(2, 3, 3), *w))
    with pytest.raises(ValueError, match=r"expected x of shape \(B, T, D\)"):
        reference.lstm(rand(3, 3), *w)
    with pytest.raises(ValueError, match=r"expected w_ih of shape \(4\*H, D\)"):
        reference.lstm(rand(2, 3, 4), *w)


# --- MFCC ------------------------------------------------------------------------------------


def test_power_spectrogram_equals_stft():
    x = rand(3, 1000, grad=False)
    spec = torch.stft(x, 256, 128, window=torch.hann_window(256, dtype=D), return_complex=True,
                      center=True, pad_mode="reflect").abs() ** 2
    torch.testing.assert_close(reference.power_spectrogram(x, 256, 128), spec)


def test_mel_filterbank_and_dct_equal_torchaudio():
    # torchaudio builds both in float32: compare at float32 precision
    fb = torchaudio.functional.melscale_fbanks(129, 0.0, 4000.0, 40, 8000)
    torch.testing.assert_close(reference.mel_filterbank(129, 8000, 40).float(), fb, atol=2e-5, rtol=1e-5)
    dct = torchaudio.functional.create_dct(13, 40, "ortho")
    torch.testing.assert_close(reference.dct_matrix(13, 40).float(), dct)
    # orthonormal columns: D^T D = I
    d = reference.dct_matrix(40, 40)
    torch.testing.assert_close(d.T @ d, torch.eye(40, dtype=D))


def test_mfcc_equals_torchaudio():
    x = rand(2, 4000)
    transform = torchaudio.transforms.MFCC(
        sample_rate=8000, n_mfcc=13, log_mels=True,
        melkwargs={"n_fft": 256, "hop_length": 128, "n_mels": 40}).double()
    ours, theirs = reference.mfcc(x, 8000), transform(x)
    # the only differences come from torchaudio's float32 filter bank
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-5)
    g = torch.randn_like(ours)
    (ga,), (gr,) = torch.autograd.grad(ours, x, g), torch.autograd.grad(theirs, x, g)
    torch.testing.assert_close(ga, gr, atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match=r"expected waveforms of shape \(B, L\)"):
        reference.mfcc(x[0], 8000)


# --- the benchmarked pairs themselves ---------------------------------------------------------


@pytest.mark.parametrize("op", sorted(CASES))
def test_benchmarked_pairs_agree(op):
    pair = CASES[op](torch.device("cpu"), torch.float64, torch.Generator().manual_seed(0), "small")
    ours, theirs = pair.scratch(), pair.optimized()
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-5)
    (ours.sum() + theirs.sum()).backward()  # both differentiate


# --- timing ----------------------------------------------------------------------------------


def test_measure_warms_up_synchronises_and_summarises(monkeypatch):
    calls, syncs = [], []
    ticks = iter([0.0, 1.0, 10.0, 13.0, 20.0, 22.0, 30.0, 34.0, 40.0, 45.0])  # 1, 3, 2, 4, 5 s

    def fake_sync(device):
        syncs.append(device)

    monkeypatch.setattr(timing_mod, "synchronize", fake_sync)
    t = measure(lambda: calls.append(1), warmup=3, repeats=5, clock=lambda: next(ticks),
                device="cuda")
    assert len(calls) == 8 and len(syncs) == 6  # once after warm-up, once per timed call
    assert t.times == [1.0, 3.0, 2.0, 4.0, 5.0]
    assert t.median == 3.0 and t.iqr == pytest.approx(2.0)  # quartiles 2 and 4
    with pytest.raises(ValueError, match="repeats must be a positive int"):
        measure(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="warmup must be a non-negative int"):
        measure(lambda: None, warmup=-1)


def test_run_suite_rows_and_table():
    rows = run_suite("cpu", ops=["conv2d"], repeats=2, warmup=0)
    assert [(r["op"], r["pass"]) for r in rows] == [("conv2d", "forward"), ("conv2d", "forward+backward")]
    for r in rows:
        assert r["scratch_ms"] > 0 and r["optimized_ms"] > 0
        assert r["speedup"] == pytest.approx(r["scratch_ms"] / r["optimized_ms"])
    table = format_table(rows)
    assert "conv2d" in table and "speed-up" in table
    with pytest.raises(ValueError, match="unknown op or pass"):
        run_suite("cpu", ops=["fft"])


def test_cli_bench_json(capsys):
    assert cli_main(["bench", "--json", "--repeats", "1", "--warmup", "0", "--ops", "attention",
                     "--device", "cpu", "--threads", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["op"] for r in out["rows"]] == ["attention", "attention"]
    assert out["rows"][0]["device"] == "cpu"


# --- FLOPs, peaks and attention throughput ----------------------------------------------------


def test_attention_flops_equal_a_counted_run():
    from torch.utils.flop_counter import FlopCounterMode

    from mmcourse.bench.flops import attention_flops, linear_flops
    from mmcourse.nn.attention import MultiHeadAttention

    B, H, S_q, S_k, d = 2, 3, 5, 7, 4
    q, k, v = rand(B, H, S_q, d), rand(B, H, S_k, d, seed=1), rand(B, H, S_k, d, seed=2)
    with FlopCounterMode(display=False) as forward:
        out = reference.attention(q, k, v)
    with FlopCounterMode(display=False) as backward:
        out.sum().backward()
    assert forward.get_total_flops() == attention_flops(B, H, S_q, S_k, d, backward=False)
    total = forward.get_total_flops() + backward.get_total_flops()
    assert total == attention_flops(B, H, S_q, S_k, d) == 12 * B * H * S_q * S_k * d
    assert attention_flops(B, H, 6, 6, d, causal=True) == attention_flops(B, H, 6, 6, d) / 2
    # the module is credited its four projections on top of the attention itself
    E, x = H * d, rand(B, S_q, H * d, seed=3).float()
    mha = MultiHeadAttention(E, H)
    with FlopCounterMode(display=False) as module:
        mha(x)[0].sum().backward()
    q, k, v = (t.detach().float().requires_grad_() for t in (q, k[:, :, :S_q], v[:, :, :S_q]))
    with FlopCounterMode(display=False) as sdpa:  # what the counter credits SDPA here
        F.scaled_dot_product_attention(q, k, v).sum().backward()
    assert module.get_total_flops() == sdpa.get_total_flops() + 4 * linear_flops(B * S_q, E, E)
    with pytest.raises(ValueError, match="causal mask needs S_q == S_k"):
        attention_flops(1, 1, 2, 3, 4, causal=True)
    with pytest.raises(ValueError, match="positive sizes"):
        attention_flops(0, 1, 2, 2, 4)


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H200", 989.4), ("NVIDIA H200 NVL", 835.0), ("NVIDIA H100 80GB HBM3", 989.4),
    ("NVIDIA H100 PCIe", 756.0), ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A10", 125.0),
    ("NVIDIA L4", 121.0), ("NVIDIA L40S", 362.0), ("Tesla T4", 65.0),
    ("NVIDIA GeForce RTX 3060", None),
])
def test_peak_by_device_name(name, peak):
    from mmcourse.bench.flops import peak_tflops

    assert peak_tflops(name=name) == peak
    assert peak_tflops("cpu") is None


def test_attention_throughput_rows_on_the_cpu(monkeypatch):
    from mmcourse.bench import throughput

    rows = throughput.attention_throughput("cpu", seq_lens=(8, 16), size="small", repeats=1,
                                           warmup=0)
    assert [(r["seq_len"], r["impl"]) for r in rows] == [
        (s, i) for s in (8, 16) for i in ("scratch", "mmcourse", "sdpa")]
    for r in rows:
        assert r["ms"] > 0 and r["tflops"] == pytest.approx(r["flops"] / r["ms"] / 1e9)
        assert r["peak_fraction"] is None and r["dtype"] == "float32"
    by = {(r["seq_len"], r["impl"]): r["flops"] for r in rows}
    assert by[(16, "sdpa")] == by[(16, "scratch")] == 4 * by[(8, "sdpa")]  # S^2
    assert by[(16, "mmcourse")] > by[(16, "sdpa")]  # and its projections
    table = throughput.format_throughput(rows)
    assert "TFLOP/s" in table and "unknown" in table and "mmcourse" in table

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(throughput, "measure", out_of_memory)
    rows = throughput.attention_throughput("cpu", seq_lens=(8,), size="small", repeats=1,
                                           warmup=0, implementations=["scratch"])
    assert rows[0]["note"] == "out of memory" and rows[0]["ms"] is None
    assert "out of memory" in throughput.format_throughput(rows)
    with pytest.raises(ValueError, match="unknown implementation"):
        throughput.attention_throughput("cpu", implementations=["flash"])
    with pytest.raises(ValueError, match="positive sequence lengths"):
        throughput.attention_throughput("cpu", seq_lens=(0,))


def test_cli_bench_seq_len(capsys):
    assert cli_main(["bench", "--json", "--repeats", "1", "--warmup", "0", "--seq-len", "8",
                     "--device", "cpu", "--threads", "1"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["impl"] for r in rows] == ["scratch", "mmcourse", "sdpa"]
    assert cli_main(["bench", "--seq-len", "8", "--ops", "lstm"]) == 2
    assert "leave out --ops" in capsys.readouterr().err
    assert cli_main(["bench", "--seq-len", "0"]) == 2


# --- the GPU report's table ---------------------------------------------------------------------


def _step(folder, name, status, out=None, err=""):
    (folder / f"{name}.status").write_text(f"{status}\n")
    if out is not None:
        (folder / f"{name}.out").write_text(out if isinstance(out, str) else json.dumps(out))
    (folder / f"{name}.err").write_text(err)


def test_gpu_report_table_from_the_steps(tmp_path, capsys):
    from mmcourse.bench import report

    _step(tmp_path, "gpu-tests", 0, "....s\n===== 4 passed, 1 skipped in 3.21s =====\n")
    attention = {"rows": [
        {"seq_len": 1024, "impl": "sdpa", "dtype": "bfloat16", "ms": 2.0, "tflops": 412.0,
         "peak_fraction": 412 / 989.4, "note": ""},
        {"seq_len": 4096, "impl": "scratch", "dtype": "bfloat16", "ms": None, "tflops": None,
         "peak_fraction": None, "note": "out of memory"}]}
    _step(tmp_path, "attention", 0, attention)
    lstm = {"rows": [{"op": "lstm", "pass": "forward+backward", "shape": "x (128, 200, 80)",
                      "scratch_ms": 90.0, "optimized_ms": 3.0, "speedup": 30.0}]}
    _step(tmp_path, "lstm", 0, lstm)
    train = {"rows": [{"model": "fused (late)", "epochs": 2, "epoch_seconds": 0.5,
                       "test_accuracy": 0.985}]}
    _step(tmp_path, "train-bf16", 0, train)
    _step(tmp_path, "train-compile", 1, "", "Traceback ...\nRuntimeError: compile failed\n")
    (tmp_path / "title.txt").write_text("NVIDIA H200, torch 2.11.0\n")
    rows, ok = report.collect(tmp_path)
    assert not ok  # the compiled run failed
    assert rows == [
        ("GPU tests", "pytest -m gpu", "4 passed, 1 skipped"),
        ("attention S=1024", "sdpa, bfloat16", "2.000 ms, 412 TFLOP/s, 41.6% of peak"),
        ("attention S=4096", "scratch, bfloat16", "out of memory"),
        ("LSTM forward+backward", "Python loop vs library, x (128, 200, 80)",
         "90.00 ms vs 3.00 ms (30.0x)"),
        ("train bf16", "fused (late)", "0.50 s/epoch, 2 epochs, test 98.5%"),
        ("train-compile", "-", "failed (status 1): RuntimeError: compile failed"),
    ]
    assert report.main([str(tmp_path)]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith("NVIDIA H200, torch 2.11.0\nmeasurement")
    _step(tmp_path, "train-compile", "skipped: no CUDA device")
    _step(tmp_path, "gpu-tests", 5, "no tests ran in 0.01s\n")
    rows, ok = report.collect(tmp_path)
    assert ok and ("train-compile", "-", "skipped: no CUDA device") in rows
    assert rows[0] == ("GPU tests", "pytest -m gpu", "no GPU tests selected")
    assert report.main([str(tmp_path / "absent")]) == 2
