#!/usr/bin/env python3
"""Instruction counts of a CUDA kernel's loops, read from its SASS: the static side of kernel work, usable on a
machine without a GPU (the timings themselves come from bench/ on the GPU machine).

  scripts/sass_loops.py kernels/selective_scan/scan_chunked_cuda.cu chunk_bwd_kernelI13__nv_bfloat16 [--all]

Compiles the file for sm_90 with the project's flags (ptxas -v: registers and spills), disassembles it with
cuobjdump (from the CUDA toolkit, else fetched once from PyPI's nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm
into build/tools), and for each function whose mangled name contains the pattern prints every loop (a backward
branch) that holds MUFU.EX2, or every loop with --all: its instruction count and the count per opcode.
"""
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "build", "tools")


def tool(name):
    found = shutil.which(name) or shutil.which(os.path.join("/usr/local/cuda/bin", name))
    if found:
        return found
    if name == "nvcc":
        print("sass_loops.py: no nvcc on PATH or in /usr/local/cuda/bin", file=sys.stderr)
        sys.exit(2)
    local = os.path.join(TOOLS, "nvidia", "cu13", "bin", name)
    if not os.path.exists(local):
        os.makedirs(TOOLS, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            for pkg in ("nvidia-cuda-cuobjdump", "nvidia-cuda-nvdisasm"):
                subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, pkg],
                               check=True)
            for whl in os.listdir(tmp):
                with zipfile.ZipFile(os.path.join(tmp, whl)) as z:
                    z.extractall(TOOLS)
        for f in os.listdir(os.path.dirname(local)):
            os.chmod(os.path.join(os.path.dirname(local), f), 0o755)
    return local


def functions(sass):
    for part in sass.split("Function : ")[1:]:
        name = part.split("\n", 1)[0].strip()
        ins = [(int(m.group(1), 16), m.group(2).strip())
               for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", part)]
        yield name, ins


def opcode(text):
    return re.sub(r"^@!?U?P\w+\s+", "", text).split()[0].split(".")[0]


def loops(ins):
    index = {a: i for i, (a, _) in enumerate(ins)}
    for i, (a, text) in enumerate(ins):
        m = re.search(r"\bBRA\b.*?0x([0-9a-f]+)", text)
        if m and int(m.group(1), 16) <= a and int(m.group(1), 16) in index:
            yield ins[index[int(m.group(1), 16)]:i + 1]


def main():
    args = [a for a in sys.argv[1:] if a != "--all"]
    if len(args) != 2:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    src, pattern = args
    if not os.path.exists(src):
        print(f"sass_loops.py: no such file: {src}", file=sys.stderr)
        sys.exit(2)
    nvcc = tool("nvcc")
    with tempfile.TemporaryDirectory() as tmp:
        obj = os.path.join(tmp, "k.o")
        cc = subprocess.run([nvcc, "-DSSM_WITH_CUDA=1", "-I" + ROOT, "-O3", "-DNDEBUG", "-std=c++20",
                             "--expt-relaxed-constexpr", "--generate-code=arch=compute_90,code=sm_90",
                             "-Xptxas", "-v", "-c", src, "-o", obj], capture_output=True, text=True)
        if cc.returncode:
            sys.stderr.write(cc.stderr)
            sys.exit(1)
        env = dict(os.environ, NVDISASM_PATH=os.path.dirname(tool("nvdisasm")))
        sass = subprocess.run([tool("cuobjdump"), "-sass", obj], capture_output=True, text=True, env=env,
                              check=True).stdout
    usage = {}
    for m in re.finditer(r"Function properties for (\S+)\n\s*(.*?)\n.*?Used (\d+) registers", cc.stderr, re.S):
        usage[m.group(1)] = f"{m.group(3)} registers, {m.group(2).strip()}"
    matched = False
    for name, ins in functions(sass):
        if pattern not in name:
            continue
        matched = True
        print(f"{name}\n  {usage.get(name, '')}")
        for body in loops(ins):
            ex2 = sum("MUFU.EX2" in t for _, t in body)
            if ex2 == 0 and "--all" not in sys.argv:
                continue
            counts = collections.Counter(opcode(t) for _, t in body)
            print(f"  loop {body[0][0]:#x}-{body[-1][0]:#x}: {len(body)} instructions, {ex2} MUFU.EX2")
            print("    " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    if not matched:
        print(f"sass_loops.py: no function in {src} matches '{pattern}'", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
