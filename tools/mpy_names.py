"""The `.mpy` build's names: the library's internal names renamed to names every MicroPython
firmware already holds in ROM.

    python tools/mpy_names.py                 # the map: original -> shipped, one per line
    python tools/mpy_names.py --explain < tb  # a traceback from the .mpy package, names restored
    python tools/mpy_names.py --refresh DIR   # remake tools/micropython_names.txt from a
                                              # MicroPython source tree and its unix32 binary

Why: a module loaded from `.mpy` interns every name it uses (a def, a class, an attribute, a
parameter, a global) that the firmware does not hold already: the name's text plus a 7 B
entry in the qstr pool, in the heap, for as long as the device runs (names are never freed;
those of a module that is unloaded again stay). Frozen modules keep theirs in flash. Shipping
the `.mpy` package with its internal names renamed to names in ROM (``abs``-like builtin
names it does not use, such as ``cosh`` or ``rjust``) costs none of that: measured on
micropython-unix32, README "Memory".

What is renamed: every name the core modules (lib/mqtt_v5/*.py a device runs, not
mqtt_v5.aws) define (a def, class, parameter, assignment or attribute target, import alias)
that costs a name at run time (anything but a local variable), EXCEPT what users reach:
- the words of the docs and the stubs (README.md, the other .md files, __init__.pyi): the
  documented API; with the public members (class attributes, methods, what methods set on
  ``self``) and the parameters of the classes and functions they name, and every
  ``PREFIX_*`` family they name (README: "PROP_*");
- every name and string of the code users write or that runs as theirs (``USER_PARTS``:
  mqtt_v5.aws, the firmware, the boards, the device demo, the device and AWS tests'
  programs), and the strings of any other file that hands MicroPython code to run (the
  tests and bench programs of ``RENAMED_PARTS``, which reach internals by name, run
  renamed against the .mpy package: ``renamed_copy``);
- the words of the core's own string literals (``getattr``, ``hasattr``, lazy-attribute
  tables, messages), and the names of the package's modules;
- names any MicroPython firmware uses (``micropython_names.txt``: the MP_QSTR names of its
  sources, all ports): a protocol or API name (``write``, ``send``, ``server_hostname``);
- dunder names, and ``const()`` names (folded away: they cost nothing).
The renaming is one-to-one and global (a name becomes the same new name in every module and
every role), so code that forwards a name (a module ``__getattr__`` handing out another
module's attribute) keeps working. New names come from ``micropython_names.txt``'s ROM names
(those of MicroPython's py/, extmod/ and asyncio, held in ROM by the ports mqtt_v5 runs on)
that no file here uses and that are not builtins, keywords or attributes of the built-in
types library classes derive from; when they run out, short names (``za``...).

The `.py` package (lib/package.json) and frozen firmware keep the original names: use them,
or ``--explain``, for readable tracebacks (the `.mpy` ones have no line numbers either).
"""

from __future__ import annotations

import ast
import builtins
import functools
import io
import itertools
import keyword
import re
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib"
CORE_DIR = LIB / "mqtt_v5"
NAMES_FILE = Path(__file__).resolve().parent / "micropython_names.txt"
# What users reach is what the docs and stubs name (every word of the .md and .pyi files),
# with the members of the classes they name and the parameters of the functions and methods
# they name, and every PREFIX_* family they name (README: "PROP_*"); plus every name and
# string of the code users write or that runs against the package as theirs does:
USER_PARTS = ("lib/mqtt_v5/aws/", "firmware/", "boards/", "tools/iot_twin/demo_device.py",
              "host_tests/device/", "host_tests/aws/mp/")
# The tests and bench programs that reach internals run renamed against the .mpy package
# (``renamed_copy``, as mp_unix.run_script and the bench do): only their strings are kept.
RENAMED_PARTS = ("host_tests/mp_scripts/", "host_tests/portable/", "tools/bench_mp/")
# Other files that hand MicroPython code to run (in strings): their strings are kept.
_MENTIONS_MICROPYTHON = re.compile(r"micropython|mp_unix|run_script", re.I)
# (this tool and its test name internals to check them: what they mention is not kept)
ABOUT_THE_MAP = ("tools/mpy_names.py", "host_tests/test_mpy_names.py")
_WORD = re.compile(r"[A-Za-z_]\w*")
# builtins, module names, and attributes of the built-in types library classes derive from
_BUILTIN_ATTRS = set().union(*(dir(t) for t in (object, BaseException, Exception, type))) \
    | set(sys.builtin_module_names) | set(dir(builtins))
# The modules the import line and a connect load, whose names get ROM names first.
FIRST = ("client", "session", "codec", "properties", "topic", "_compat", "__init__", "tls",
         "transport", "_compat_micropython")


def core_files(files: list[str] | None = None) -> list[Path]:
    """The modules renamed: ``files`` (relative to lib/) in mqtt_v5/ itself, by default
    gen_package_json.core_modules() (what the .mpy build renames)."""
    if files is None:
        sys.path.insert(0, str(ROOT / "tools"))
        import gen_package_json

        files = gen_package_json.core_modules()
    return sorted(LIB / f for f in files if "/" not in f[len("mqtt_v5/"):])


def _keep_files(core: list[Path]) -> list[Path]:
    """The repository's files (those git tracks, in a git checkout) whose words may be kept
    (see USER_PARTS): not ``core`` nor the modules beside it."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode()
        files = {ROOT / f for f in out.split("\0") if f}
    except (OSError, subprocess.CalledProcessError):
        files = {p for p in ROOT.rglob("*") if not any(
            part.startswith(".") for part in p.relative_to(ROOT).parts)}
    found = []
    for p in sorted(files - set(core)):
        if p.parent == CORE_DIR or not p.is_file():  # (the CPython-only modules beside it)
            continue
        if p.relative_to(ROOT).as_posix() in ABOUT_THE_MAP:
            continue
        if p.suffix in (".md", ".pyi"):
            found.append(p)
        elif p.suffix == ".py" and (
                p.relative_to(ROOT).as_posix().startswith(USER_PARTS + RENAMED_PARTS)
                or _MENTIONS_MICROPYTHON.search(p.read_text(errors="replace"))):
            found.append(p)
    return found


def _firmware_names() -> tuple[set, list]:
    """(every name a MicroPython firmware's sources use, the ROM names of its core in file
    order); lines of micropython_names.txt: "rom NAME" or "api NAME"."""
    api, rom = set(), []
    for line in NAMES_FILE.read_text().split("\n"):
        kind, _, name = line.partition(" ")
        if name:
            api.add(name)
            if kind == "rom":
                rom.append(name)
    return api, rom


class _Scan(ast.NodeVisitor):
    """Names the modules define, names that cost a qstr at run time, const() names."""

    def __init__(self):
        self.defined, self.costly, self.consts = set(), set(), set()
        self.members = {}  # a class's members (self.x included), a function's parameters
        self.scopes = [None]  # the local names of each enclosing function (None: not one)
        self.owners = []  # the enclosing classes and functions: (name, is a class)

    def _define(self, name):
        self.defined.add(name)
        for owner, is_class in reversed(self.owners):  # (self.x in a method: the class's)
            if is_class:
                self.members.setdefault(owner, set()).add(name)
                break

    def _local(self, name):
        return self.scopes[-1] is not None and name in self.scopes[-1]

    def _function(self, node, args, body):
        names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
        names |= {a.arg for a in (args.vararg, args.kwarg) if a}
        self.defined |= names
        if self.owners:
            self.members.setdefault(self.owners[-1][0], set()).update(names)
        self.costly |= names  # (a parameter's name is in its function's prelude)
        declared = set()
        for n in ast.walk(node):
            if isinstance(n, (ast.Global, ast.Nonlocal)):
                declared |= set(n.names)
        for n in (body if isinstance(body, list) else [body]):
            for m in ast.walk(n):
                if isinstance(m, ast.Name) and isinstance(m.ctx, (ast.Store, ast.Del)):
                    names.add(m.id)
                elif isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(m.name)
                elif isinstance(m, ast.alias):
                    names.add((m.asname or m.name).split(".")[0])
                elif isinstance(m, ast.ExceptHandler) and m.name:
                    names.add(m.name)
        self.scopes.append(names - declared)
        for d in args.defaults + [d for d in args.kw_defaults if d]:
            self.visit(d)
        for n in (body if isinstance(body, list) else [body]):
            self.visit(n)
        self.scopes.pop()

    def visit_FunctionDef(self, node):
        self._define(node.name)
        self.costly.add(node.name)
        for d in node.decorator_list:
            self.visit(d)
        self.owners.append((node.name, False))
        self._function(node, node.args, node.body)
        self.owners.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        self.owners.append(("<lambda>", False))  # (its parameters: no one names them)
        self._function(node, node.args, node.body)
        self.owners.pop()

    def visit_ClassDef(self, node):
        self._define(node.name)
        self.costly.add(node.name)
        for n in node.bases + node.keywords + node.decorator_list:
            self.visit(n)
        self.scopes.append(None)  # a class body's names are its attributes
        self.owners.append((node.name, True))
        for n in node.body:
            self.visit(n)
        self.owners.pop()
        self.scopes.pop()

    def visit_Assign(self, node):
        v = node.value
        if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "const":
            self.consts |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        self.generic_visit(node)

    def visit_Name(self, node):
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            if self._local(node.id):
                self.defined.add(node.id)
            else:
                self._define(node.id)
        if not self._local(node.id):
            self.costly.add(node.id)

    def visit_Attribute(self, node):
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._define(node.attr)  # (self.x = ... in a method: a member of its class)
        self.costly.add(node.attr)
        self.visit(node.value)

    def visit_keyword(self, node):
        if node.arg:
            self.costly.add(node.arg)
        self.visit(node.value)

    def visit_alias(self, node):
        if node.asname:
            self._define(node.asname)
        for n in (node.asname or node.name).split("."):
            self.costly.add(n)

    def visit_ExceptHandler(self, node):
        if node.name:
            self.defined.add(node.name)
            if not self._local(node.name):
                self.costly.add(node.name)
        self.generic_visit(node)

    def visit_Global(self, node):
        self.costly |= set(node.names)

    visit_Nonlocal = visit_Global


def _docstring_lines(tree: ast.AST) -> set:
    lines = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            b = n.body
            if b and isinstance(b[0], ast.Expr) and isinstance(b[0].value, ast.Constant) \
                    and isinstance(b[0].value.value, str):
                lines.add(b[0].lineno)
    return lines


def _code_words(text: str, names: bool = True) -> set:
    """The names (unless not ``names``) and the words of the string literals of a Python
    file, but for its docstrings and comments (they reach nothing); all its words if it does
    not parse."""
    try:
        docs = _docstring_lines(ast.parse(text))
        found = set()
        for t in tokenize.generate_tokens(io.StringIO(text).readline):
            if t.type == tokenize.NAME and names:
                found.add(t.string)
            elif t.type == tokenize.STRING and t.start[0] not in docs:
                found |= set(_WORD.findall(t.string))
        return found
    except (tokenize.TokenError, SyntaxError):
        return set(_WORD.findall(text))


def _short_names():
    letters = "abcdefghijklmnopqrstuvwxyz"
    for n in range(1, 4):
        for i in range(len(letters) ** n):
            s, k = "", i
            for _ in range(n):
                s = letters[k % 26] + s
                k //= 26
            yield "z" + s  # (z...: never a word of this library)


def plan(files: list[Path]) -> dict[str, str]:
    """{original: new} for the core modules ``files`` (sorted, deterministic)."""
    return dict(_plan(tuple((p.name, p.read_text()) for p in files)))


@functools.lru_cache(maxsize=4)
def _plan(sources: tuple) -> tuple:
    scan = _Scan()
    strings, used = set(), set()
    modules = {"mqtt_v5", "aws"} | {p.stem for p in CORE_DIR.rglob("*.py")}
    for name, text in sources:
        scan.visit(ast.parse(text, name))
        strings |= _code_words(text, names=False)  # (f-strings included)
        used |= set(_WORD.findall(text))
    keep, keep_code = set(), set()  # (keep_code: names no new name may take)
    docs = []
    for p in _keep_files([CORE_DIR / name for name, _ in sources]):
        text = p.read_text(errors="replace")
        rel = p.relative_to(ROOT).as_posix()
        if p.suffix != ".py":  # (a new name may be a word of the docs' prose)
            keep |= set(_WORD.findall(text))
            docs.append(text)
            continue
        words = _code_words(text)
        keep_code |= words
        keep |= words if rel.startswith(USER_PARTS) else _code_words(text, names=False)
    for owner, members in scan.members.items():  # a named class's, a named function's
        if owner in keep:
            keep |= {n for n in members if not n.startswith("_")}
    for prefix in set(re.findall(r"\b([A-Z][A-Z0-9]*_)\*", "\n".join(docs))):
        keep |= {n for n in scan.defined if n.startswith(prefix)}
    api, rom = _firmware_names()
    rename = sorted(
        n for n in scan.defined & scan.costly - scan.consts
        - keep - strings - modules - api - _BUILTIN_ATTRS if not n.startswith("__"))
    taken = used | keep_code | api.difference(rom) | _BUILTIN_ATTRS | set(keyword.kwlist)
    targets = [n for n in rom if n not in taken and not n.startswith("_") and n.islower()]
    short = (s for s in _short_names() if s not in taken)
    targets += itertools.islice(short, max(0, len(rename) - len(targets)))
    # the names every device loads (FIRST's modules) get the ROM names first
    first = set()
    for name, text in sources:
        if name[:-3] in FIRST:
            first |= set(_WORD.findall(text))
    order = sorted(rename, key=lambda n: (n not in first, n))
    return tuple(zip(order, targets, strict=False))


def rename(text: str, names: dict[str, str]) -> str:
    """``text`` (a module's source) with every NAME token in ``names`` replaced."""
    lines = text.splitlines(keepends=True)
    edits: dict[int, list] = {}
    for t in tokenize.generate_tokens(io.StringIO(text).readline):
        if t.type == tokenize.NAME and t.string in names:
            edits.setdefault(t.start[0] - 1, []).append((t.start[1], t.end[1], names[t.string]))
    for row, spans in edits.items():
        line = lines[row]
        for a, b, new in sorted(spans, reverse=True):
            line = line[:a] + new + line[b:]
        lines[row] = line
    return "".join(lines)


def renamed_copy(path: Path, out: Path, names: dict[str, str]) -> Path:
    """Where ``path`` (a file or folder of RENAMED_PARTS; anything else is returned as it
    is) runs against the .mpy package: a copy under ``out`` with its names renamed as the
    package's, remade where older than its source. (The tests and bench programs that reach
    internals by name: ``c._transport``, ``codec.decode_body``.)"""
    path = Path(path)
    try:
        rel = path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path
    part = next((r for r in RENAMED_PARTS if (rel + "/").startswith(r)), None)
    if part is None:
        return path
    top = ROOT / part
    for src in sorted(top.rglob("*.py")):  # (the whole part: a test imports its helpers)
        dst = out / src.relative_to(ROOT)
        if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(rename(src.read_text(), names))
    return out / rel


def explain(text: str, names: dict[str, str]) -> str:
    back = {v: k for k, v in names.items()}
    return re.sub(r"\b[A-Za-z_]\w*\b", lambda m: back.get(m.group(0), m.group(0)), text)


def refresh(src: Path, unix32: Path) -> None:
    """micropython_names.txt from a MicroPython source tree (``src``) and its unix32 binary:
    "api NAME" for every MP_QSTR name of its sources, "rom NAME" for those of py/, extmod/
    and the asyncio package that the binary holds in ROM."""
    import tempfile

    def qstrs(paths):
        out = set()
        for p in paths:
            out |= set(re.findall(r"MP_QSTR_(\w+)", p.read_text(errors="replace")))
        return out

    every = qstrs(p for p in src.rglob("*.[ch]") if "/lib/" not in p.as_posix())
    # the core and the extmod modules every port with networking has, and the asyncio
    # package ports freeze: names in ROM wherever mqtt_v5 runs (if a firmware lacks one,
    # it costs that firmware the name: a renamed name never breaks)
    core = qstrs([*(src / "py").glob("*.c"), *(src / "extmod").glob("*.c")])
    for p in (src / "extmod" / "asyncio").glob("*.py"):
        core |= {t.string for t in tokenize.generate_tokens(io.StringIO(p.read_text()).readline)
                 if t.type == tokenize.NAME}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "names.py"
        script.write_text(f"import micropython\nfor n in {sorted(core)!r}:\n"
                          "    hasattr(None, n)\nmicropython.qstr_info(1)\n")
        out = subprocess.run([str(unix32), "-X", "heapsize=8m", str(script)],
                             capture_output=True, text=True, check=True).stdout
    made = set(re.findall(r"^Q\((.*)\)$", out, re.M))
    lines = [f"{'rom' if n in core and n not in made else 'api'} {n}"
             for n in sorted(every | core)]
    NAMES_FILE.write_text("\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--refresh"]:
        refresh(Path(argv[1]), Path(argv[2]))
        return 0
    names = plan(core_files())
    if argv[:1] == ["--explain"]:
        sys.stdout.write(explain(sys.stdin.read(), names))
        return 0
    for k, v in names.items():
        print(k, v)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
