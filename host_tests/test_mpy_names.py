"""The .mpy build renames the library's internal names to names MicroPython holds in ROM
(tools/mpy_names.py): never a name users or other code reach, one-to-one, the same program;
and on the unix port the package as shipped interns none of the names it renamed."""

from __future__ import annotations

import builtins
import inspect
import io
import keyword
import re
import tokenize
from pathlib import Path

import gen_package_json
import mp_unix
import mpy_names
import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = mpy_names.core_files(gen_package_json.core_modules())
NAMES = gen_package_json.renamed_names()
STUB = ROOT / "lib" / "mqtt_v5" / "__init__.pyi"


def _documented_words() -> set:
    words = set()
    for p in [*ROOT.glob("*.md"), *ROOT.glob("*/README.md"), *ROOT.glob("lib/**/*.md"), STUB]:
        words |= set(re.findall(r"[A-Za-z_]\w*", p.read_text()))
    return words


def _signature(f) -> set:
    try:
        return set(inspect.signature(f).parameters)
    except (TypeError, ValueError):
        return set()


def test_the_map_renames_no_documented_name():
    """What users reach is what the docs and the stub name: those names, every public
    member (class attributes, methods and their parameters, what __init__ sets) of the
    classes they name, the parameters of the functions they name, the PROP_* family."""
    import mqtt_v5
    from mqtt_v5 import properties

    assert NAMES, "nothing renamed: the .mpy build would intern every name"
    documented = _documented_words()
    reached = set(documented)
    for p in CORE:
        if p.stem.startswith("_") and p.stem != "__init__":
            continue  # (a private module: what it defines is reached through others)
        module = __import__(f"mqtt_v5.{p.stem}", fromlist=["_"]) if p.stem != "__init__" \
            else mqtt_v5
        for name, value in list(vars(module).items()):
            if name not in documented:
                continue
            if inspect.isclass(value):
                for member, attr in vars(value).items():
                    if not member.startswith("_"):
                        reached.add(member)
                    if callable(attr) and (not member.startswith("_") or member == "__init__"):
                        reached |= _signature(attr)
            elif callable(value):
                reached |= _signature(value)
    reached = {n for n in reached if not n.startswith("_")}
    assert reached & set(NAMES) == set()
    # an instance's attributes too: what users read off the objects they get
    from mqtt_v5 import ConnectOptions, MqttClient, ReconnectConfig, TlsConfig

    for obj in (ConnectOptions("x"), ReconnectConfig(), TlsConfig(), MqttClient(
            ConnectOptions("x")).limits):
        public = {n for n in vars(obj) if not n.startswith("_")}
        assert public, obj
        assert public & set(NAMES) == set(), type(obj)
    assert {n for n in vars(properties) if n.startswith("PROP_")} & set(NAMES) == set()
    # the names a user's program passes by keyword or reads off a message
    assert {"keep_alive", "topic_alias", "payload", "session_present", "is_connected",
            "reconnect_config", "on_connection_event", "publish_qos1"} <= reached
    # and internals are renamed: the sans-IO layers' helpers, the client's private state
    assert {"decode_body", "filter_ok", "_handshake", "_transport"} <= set(NAMES)


def test_new_names_are_rom_names_or_short_ones_and_meet_nothing():
    api, rom = mpy_names._firmware_names()
    rom = set(rom)
    new = list(NAMES.values())
    assert len(set(new)) == len(new), "two names renamed to one"
    used = set()
    for p in CORE:
        used |= set(re.findall(r"[A-Za-z_]\w*", p.read_text()))
    for n in new:
        assert n in rom or re.fullmatch(r"z[a-z]{1,3}", n), n
        assert n not in used, n
        assert not keyword.iskeyword(n), n
        assert not hasattr(builtins, n), n
        assert not n.startswith("_"), n
    assert set(NAMES) & api == set()
    # most of what a device loads gets a ROM name (a free one)
    assert sum(n in rom for n in new) > len(new) // 2


def test_names_in_strings_and_other_files_are_kept():
    for p in CORE:
        text = p.read_text()
        for t in tokenize.generate_tokens(io.StringIO(text).readline):
            if t.type == tokenize.STRING and not t.string.startswith(('"""', "'''")):
                words = set(re.findall(r"[A-Za-z_]\w*", t.string))
                assert not words & set(NAMES), (p.name, t.string)
    # getattr(self, "_cb_tasks", None) in _client_extras
    assert "_cb_tasks" not in NAMES
    # a name of a module of the package is never renamed (from . import _cold)
    assert not {p.stem for p in CORE} & set(NAMES)


def test_renaming_keeps_the_program():
    """Each module renamed is the same tree with the names substituted, and compiles."""
    for p in CORE:
        text = p.read_text()
        renamed = mpy_names.rename(text, NAMES)
        compile(renamed, p.name, "exec")

        def shape(src, names):
            out = []
            for t in tokenize.generate_tokens(io.StringIO(src).readline):
                if t.type == tokenize.NAME:
                    out.append(names.get(t.string, t.string))
                elif t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE):
                    out.append(t.string)
            return out

        assert shape(text, NAMES) == shape(renamed, {}), p.name
    explained = mpy_names.explain("in " + " ".join(NAMES.values()), NAMES)
    assert explained == "in " + " ".join(NAMES)


def test_the_mpy_package_interns_none_of_the_renamed_names():
    """On the 32-bit unix port: import what a connecting client loads from the .mpy
    package, and list the names MicroPython made at run time."""
    if mp_unix.binary("unix32") is None:
        pytest.skip(mp_unix.why_missing())
    modules = [p.stem for p in CORE if p.stem in mpy_names.FIRST and p.stem != "__init__"]
    imports = "\n".join(f"import mqtt_v5.{m}" for m in modules)
    script = f"import micropython\nimport mqtt_v5\n{imports}\nmicropython.qstr_info(1)\n"
    proc = mp_unix.run_script("unix32", script, mpy=True)
    assert proc.returncode == 0, proc.stderr
    made = set(re.findall(r"^Q\((.*)\)$", proc.stdout, re.M))
    assert "mqtt_v5.client" in made  # (the listing works)
    assert made & set(NAMES) == set()
    # what the .py tree interns for the same imports includes renamed names
    proc = mp_unix.run_script("unix32", script, mpy=False)
    assert set(re.findall(r"^Q\((.*)\)$", proc.stdout, re.M)) & set(NAMES)


def test_explain_reads_a_traceback_back():
    shipped = {v: k for k, v in NAMES.items()}
    some = sorted(shipped)[:3]
    tb = "Traceback:\n" + "".join(f'  File "client", line 1, in {n}\n' for n in some)
    out = mpy_names.explain(tb, NAMES)
    for n in some:
        assert f"in {shipped[n]}\n" in out
    assert out.startswith("Traceback:\n")  # (only names are replaced)
