"""Make lava-nc 0.10.0 and lava-dl 0.6.0 import on Python 3.11. Idempotent.

* lava-nc: dataclass fields ``x: ByteEncoder = ByteEncoder()`` are mutable defaults, which
  Python 3.11 rejects; they become ``field(default_factory=ByteEncoder)``.
* lava-dl: ``slayer/__init__.py`` imports ``object_detection`` (needs torchvision / OpenCV, which
  we do not install); the import is guarded.
* lava-dl's wheel installs a top-level ``tests`` package (110 MB) into site-packages; removed so
  that it never shadows a project's own tests.
"""
import re
import shutil
import sysconfig
from pathlib import Path

site = Path(sysconfig.get_paths()["purelib"])


def patch(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if new in text:
        return
    if old not in text:
        raise SystemExit(f"patch_lava: {path} does not contain the expected text {old!r}")
    path.write_text(text.replace(old, new))


var_model = site / "lava/magma/compiler/var_model.py"
text = var_model.read_text()
patched = re.sub(r"(\w+): ByteEncoder = ByteEncoder\(\)",
                 r"\1: ByteEncoder = field(default_factory=ByteEncoder)", text)
patched = patched.replace("from dataclasses import dataclass, InitVar",
                          "from dataclasses import dataclass, InitVar, field")
if patched != text:
    var_model.write_text(patched)

slayer_init = site / "lava/lib/dl/slayer/__init__.py"
if slayer_init.exists():
    patch(slayer_init, "from . import object_detection as obd\n",
          "try:\n    from . import object_detection as obd\nexcept ImportError:  # needs torchvision\n"
          "    obd = None\n")

stray_tests = site / "tests"
if stray_tests.is_dir() and (stray_tests / "lava").exists():
    shutil.rmtree(stray_tests)
