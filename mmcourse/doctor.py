"""``mmcourse doctor``: is this machine ready for the course? Each check does real work."""

from __future__ import annotations

import importlib
import json
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

TESTED = {"torch": "2.11.0", "torchvision": "0.26.0", "torchaudio": "2.11.0"}
INSTALL_TRIO = "pip install torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0"


@dataclass
class Row:
    """One line of the report."""

    check: str
    ok: bool
    detail: str
    fix: str = ""


def _version(module: str) -> str:
    return str(getattr(importlib.import_module(module), "__version__", "?")).split("+")[0]


def _python() -> Row:
    ok = sys.version_info >= (3, 10)
    detail = f"{platform.python_implementation()} {platform.python_version()}"
    return Row("python", ok, detail, "" if ok else "install Python 3.10 or newer")


def _torch() -> Row:
    import torch

    a = torch.arange(6.0).reshape(2, 3)
    assert torch.equal(a @ a.T, torch.tensor([[5.0, 14.0], [14.0, 50.0]]))
    x = torch.randn(1, 1, 5, 5)
    y = torch.nn.functional.conv2d(x, torch.ones(1, 1, 3, 3))
    assert y.shape == (1, 1, 3, 3)
    return Row("torch", True, f"{_version('torch')}: matmul and conv2d work")


def _torchvision() -> Row:
    import torch
    import torchvision
    from torchvision.transforms import v2

    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.1, 0.1, 2.0, 2.0]])
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5)  # a compiled op
    assert keep.tolist() == [0]
    img = v2.Resize((4, 4), antialias=True)(torch.rand(1, 8, 8))
    assert img.shape == (1, 4, 4)
    return Row("torchvision", True, f"{_version('torchvision')}: nms and Resize work")


def _torchaudio() -> Row:
    import torch
    import torchaudio

    wave = torch.sin(torch.linspace(0, 400 * 3.14159, 8000)).unsqueeze(0)
    mfcc = torchaudio.transforms.MFCC(sample_rate=8000, n_mfcc=13, melkwargs={"n_mels": 23})
    assert mfcc(wave).shape[:2] == (1, 13)
    filtered = torchaudio.functional.lfilter(  # a compiled op
        wave, torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])
    )
    assert filtered.shape == wave.shape
    return Row("torchaudio", True, f"{_version('torchaudio')}: MFCC and lfilter work")


def _trio() -> Row:
    versions = {m: _version(m) for m in TESTED}
    torch_minor = versions["torch"].split(".")[:2]
    vision_minor = versions["torchvision"].split(".")[:2]
    audio_minor = versions["torchaudio"].split(".")[:2]
    # torchvision 0.N pairs with torch 2.(N-15); torchaudio shares torch's version.
    ok = (
        torch_minor == audio_minor
        and torch_minor[0] == "2"
        and int(vision_minor[1]) == int(torch_minor[1]) + 15
    )
    detail = ", ".join(f"{m} {v}" for m, v in versions.items())
    tested = versions == TESTED
    note = " (the tested trio)" if tested else f" (tested: {', '.join(TESTED.values())})"
    fix = "" if ok else f"the three must match; reinstall them together: {INSTALL_TRIO}"
    return Row("torch trio", ok, detail + (note if ok else " do not match"), fix)


def _libraries() -> Row:
    import soundfile

    names = ["numpy", "matplotlib", "sklearn", "tqdm", "nbformat"]
    versions = [f"{n} {_version(n)}" for n in names]
    return Row("libraries", True, ", ".join(versions) + f", soundfile {soundfile.__version__}")


def _devices() -> list[Row]:
    import torch

    from mmcourse.runtime import amp_dtypes, mps_available, pick_device

    def names(dtypes: list) -> str:
        return "/".join(str(d).replace("torch.", "") for d in dtypes)

    rows = [Row("device cpu", True, f"{torch.get_num_threads()} threads; autocast {names(amp_dtypes('cpu'))}")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            x = torch.ones(4, device=f"cuda:{i}")
            assert float(x.sum()) == 4.0
            name = torch.cuda.get_device_name(i)
            rows.append(Row(f"device cuda:{i}", True, f"{name}; autocast {names(amp_dtypes(f'cuda:{i}'))}"))
    else:
        rows.append(Row("device cuda", True, "no CUDA GPU (fine: every notebook runs on the CPU)"))
    if mps_available():
        rows.append(Row("device mps", True, f"Apple GPU; autocast {names(amp_dtypes('mps'))}"))
    rows.append(Row("chosen device", True, str(pick_device())))
    return rows


def _data() -> Row:
    from mmcourse.data import verify
    from mmcourse.data.integrity import REINSTALL

    problems = verify()
    if problems:
        return Row("course data", False, "; ".join(problems), f"reinstall mmcourse ({REINSTALL})")
    return Row("course data", True, "every shipped file present, SHA-256 verified")


CHECKS: list[tuple[str, Callable[[], Row | list[Row]], str]] = [
    ("python", _python, "install Python 3.10 or newer"),
    ("torch", _torch, INSTALL_TRIO),
    ("torchvision", _torchvision, INSTALL_TRIO + "  (a CPU-only torch wheel cannot load torchvision's ops)"),
    ("torchaudio", _torchaudio, INSTALL_TRIO + "  (torchaudio needs a torch of the same version)"),
    ("torch trio", _trio, INSTALL_TRIO),
    ("libraries", _libraries, "pip install mmcourse  (installs numpy, matplotlib, scikit-learn, tqdm, soundfile, nbformat)"),
    ("devices", _devices, INSTALL_TRIO),
    ("course data", _data, "pip install --force-reinstall --no-deps mmcourse"),
]


def run_checks() -> list[Row]:
    """Run every check; a check that raises becomes a failed row with its fix."""
    rows: list[Row] = []
    for name, check, fix in CHECKS:
        try:
            result = check()
        except Exception as err:  # any failure is reported, never hidden
            message = f"{type(err).__name__}: {err}".strip()
            rows.append(Row(name, False, message.splitlines()[0][:200], fix))
            continue
        rows.extend(result if isinstance(result, list) else [result])
    return rows


def render(rows: list[Row]) -> str:
    width = max(len(r.check) for r in rows)
    lines = [f"{'check'.ljust(width)}  ok    detail", f"{'-' * width}  ----  {'-' * 40}"]
    for r in rows:
        lines.append(f"{r.check.ljust(width)}  {'yes ' if r.ok else 'NO  '}  {r.detail}")
    failed = [r for r in rows if not r.ok]
    if failed:
        lines.append("")
        lines.append(f"{len(failed)} problem(s):")
        for r in failed:
            lines.append(f"- {r.check}: {r.detail}\n  fix: {r.fix}")
    else:
        lines.append("\nAll is well: this machine is ready for the course.")
    return "\n".join(lines)


def main(as_json: bool = False) -> int:
    """Print the report; return 0 only when every check passed."""
    rows = run_checks()
    ok = all(r.ok for r in rows)
    if as_json:
        print(json.dumps({"ok": ok, "checks": [asdict(r) for r in rows]}, indent=2))
    else:
        print(render(rows))
    return 0 if ok else 1
