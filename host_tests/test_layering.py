"""Architecture rules of STYLE.md "Layers", checked on the source with ``ast``:

* the sans-IO core (codec, properties, topic, session) imports no asyncio, socket, ssl,
  time, network or select -- anywhere in the module, function bodies included -- and its
  imports inside the package point one way (down the layers), never to transport/client;
* importing the core in a fresh interpreter loads none of asyncio, socket, ssl, select
  (``_compat`` may import time for ticks: it is the one module allowed to);
* no module of lib/ but ``_compat.py`` branches on the runtime: no ``sys.implementation``,
  no ``micropython`` import, no try/except ImportError probing for a module, no use of
  ``IS_MICROPYTHON``.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PKG = ROOT / "lib" / "mqtt_v5"

BANNED = {"asyncio", "socket", "ssl", "time", "network", "select"}

# The sans-IO core and what each may import from the package: arrows point down only.
# (_codec_rare and _session_rare: the cold halves of codec and session, loaded on first
# use; _codec_rare imports codec back, so it is not checked as CORE. _publish_rare: session's
# PUBLISH off its plain path, below _session_rare, which resends through it.
# _properties_rare: properties' error texts; _errtext: codec's and session's. _connect:
# session's CONNECT, loaded for each connect and unloaded again; it imports codec back, as
# _codec_rare does.)
LAYER = {"_compat": 0, "errors": 0, "_properties_rare": 0.5, "_errtext": 0.5, "reasons": 1,
         "properties": 1, "topic": 2,
         "_codec_rare": 2.5, "_connect": 2.6, "codec": 3, "_publish_rare": 3.4,
         "_session_rare": 3.5, "session": 4}
CORE = ("_properties_rare", "properties", "topic", "codec", "_publish_rare", "_session_rare",
        "session")

RUNTIME_PROBES = {"micropython", "machine", "esp", "esp32", "network", "pyb", "uasyncio",
                  "usocket", "ussl", "utime", "uselect", "ustruct", "ujson", "uos", "uerrno",
                  "ubinascii", "uio", "ucollections", "ure", "uhashlib", "urandom"}


def lib_modules():
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def imports(tree, package_parts):
    """(module, lineno) for every import in ``tree``; relative imports resolved to
    ``mqtt_v5.x`` names. ``package_parts`` is the importing module's package."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[:len(package_parts) - node.level + 1]
                if node.module:
                    out.append((".".join([*base, node.module]), node.lineno))
                else:  # from . import codec
                    out.extend((".".join([*base, a.name]), node.lineno) for a in node.names)
            else:
                out.append((node.module, node.lineno))
    return out


def parse(path):
    return ast.parse(path.read_text(), str(path))


@pytest.mark.parametrize("name", CORE)
def test_core_imports_no_io_and_no_clock(name):
    path = PKG / (name + ".py")
    if not path.exists():
        pytest.skip(f"{name}.py does not exist yet")
    bad = [(mod, line) for mod, line in imports(parse(path), ["mqtt_v5"])
           if mod.split(".")[0] in BANNED]
    assert not bad, f"{name}.py imports {bad}: the sans-IO core takes time and bytes as input"


@pytest.mark.parametrize("name", CORE)
def test_core_imports_point_down_the_layers(name):
    path = PKG / (name + ".py")
    if not path.exists():
        pytest.skip(f"{name}.py does not exist yet")
    for mod, line in imports(parse(path), ["mqtt_v5"]):
        if not mod.startswith("mqtt_v5"):
            continue
        target = mod.split(".")[1] if "." in mod else ""
        assert target in LAYER, f"{name}.py:{line} imports {mod}, outside the sans-IO core"
        assert LAYER[target] < LAYER[name], (
            f"{name}.py:{line} imports {mod}: arrows point down (layer {LAYER[target]} "
            f"is not below {LAYER[name]})")


def test_importing_the_core_loads_no_io_module():
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'lib')!r})\n"
        "before = set(sys.modules)\n"
        "import mqtt_v5.codec, mqtt_v5.properties, mqtt_v5.topic, mqtt_v5.reasons\n"
        "try:\n"
        "    import mqtt_v5.session\n"
        "except ImportError:\n"
        "    pass\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], check=True, capture_output=True,
                         text=True).stdout.split()
    loaded = {m.split(".")[0] for m in out}
    assert not loaded & (BANNED - {"time"}), sorted(loaded & BANNED)


def test_the_tree_is_parsed():
    names = {p.stem for p in lib_modules()}
    assert {"codec", "properties", "topic", "_compat"} <= names


def runtime_branches(tree):
    """Messages for every place in ``tree`` that branches on the runtime."""
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Attribute) and node.attr == "implementation":
            found.append(f"{line}: reads sys.implementation: ask _compat")
        if isinstance(node, ast.Name | ast.Attribute):
            ident = node.id if isinstance(node, ast.Name) else node.attr
            if ident == "IS_MICROPYTHON":
                found.append(f"{line}: branches on IS_MICROPYTHON: put the difference in "
                             "_compat")
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            names = []
        found.extend(f"{line}: imports {n}: runtime-specific modules come from _compat"
                     for n in names if n.split(".")[0] in RUNTIME_PROBES)
        if isinstance(node, ast.Try):
            catches = any(h.type is not None and ("ImportError" in ast.dump(h.type)
                                                  or "ModuleNotFoundError" in ast.dump(h.type))
                          for h in node.handlers)
            probes = [n for stmt in node.body for n in ast.walk(stmt)
                      if isinstance(n, ast.Import)
                      or (isinstance(n, ast.ImportFrom) and not n.level)]
            if catches and probes:
                found.append(f"{line}: probes for a module with try/except ImportError: a "
                             "runtime branch, it belongs in _compat")
    return found


# Modules known to break the rule, with why; a case listed here is an xfail (not strict:
# fixing the module must not fail the suite -- then delete its line here).
KNOWN_RUNTIME_BRANCHES: dict[str, str] = {}


def _runtime_cases():
    for p in lib_modules():
        rel = str(p.relative_to(PKG))
        why = KNOWN_RUNTIME_BRANCHES.get(rel)
        marks = [pytest.mark.xfail(reason=why, strict=False)] if why else []
        yield pytest.param(p, id=rel, marks=marks)


@pytest.mark.parametrize("path", list(_runtime_cases()))
def test_only_compat_branches_on_the_runtime(path):
    if path.name == "_compat.py" and path.parent == PKG:
        return
    found = runtime_branches(parse(path))
    assert not found, f"{path.relative_to(ROOT)}: " + "; ".join(found)


def test_the_checks_can_fail():
    # The checks above must catch what they are meant to catch.
    for src in ("import sys\nX = sys.implementation.name\n",
                "try:\n    import micropython\nexcept ImportError:\n    pass\n",
                "try:\n    import ujson as json\nexcept ImportError:\n    import json\n",
                "try:\n    import foo\nexcept (OSError, ImportError):\n    foo = None\n",
                "def f():\n    from micropython import const\n",
                "from ._compat import IS_MICROPYTHON\nif IS_MICROPYTHON:\n    pass\n"):
        assert runtime_branches(ast.parse(src)), src
    # lazy submodule import by name (mqtt_v5/__init__.py) is not a runtime probe
    assert not runtime_branches(ast.parse(
        "try:\n    __import__('mqtt_v5.x')\nexcept ImportError:\n    pass\n"))
    assert [m for m, _ in imports(ast.parse("def f():\n    import time\n"), ["mqtt_v5"])] == [
        "time"]
    assert [m for m, _ in imports(ast.parse("from . import codec\n"), ["mqtt_v5"])] == [
        "mqtt_v5.codec"]
    assert [m for m, _ in imports(ast.parse("from .x import y\n"), ["mqtt_v5"])] == [
        "mqtt_v5.x"]


# The drivers talk to the Session through its public methods only (issue 8, "shape of the
# driver"): no ``<session>._name`` read or write, where <session> is ``x._session`` or a name
# bound to it (``s = self._session``).
DRIVERS = ("client.py", "sync_client.py", "_cold.py", "_rare.py")


def _session_private_uses(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []

    def is_session(node, aliases):
        return (isinstance(node, ast.Attribute) and node.attr in ("_session", "session")) or (
            isinstance(node, ast.Name) and node.id in aliases)

    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        aliases = set()
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign) and is_session(node.value, set()):
                aliases.update(t.id for t in node.targets if isinstance(t, ast.Name))
        for node in ast.walk(fn):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and is_session(node.value, aliases)):
                found.append(f"{path.name}:{node.lineno}: .{node.attr}")
    return found


@pytest.mark.parametrize("name", DRIVERS)
def test_drivers_use_no_private_session_attribute(name):
    assert not _session_private_uses(PKG / name)


def test_the_private_session_check_finds_one(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(self):\n    s = self._session\n    return s._slots\n")
    assert _session_private_uses(bad) == ["bad.py:3: ._slots"]
