#!/usr/bin/env node
// Run plain-assert test files (and snippets) under REAL MicroPython: the official WebAssembly
// port, npm package @micropython/micropython-webassembly-pyscript (pinned in package.json,
// installed by `make setup`).
//
// Usage:
//   node tools/mp_run.mjs [--heap N] [--pystack N] [--timeout S] [--json] file.py ...
//   node tools/mp_run.mjs [--heap N] --exec "python code"
//
// What it does:
//   * loads MicroPython, copies the whole lib/ tree to /lib in its in-memory filesystem
//     (/lib is already on sys.path in this port);
//   * for each file: copies it and its sibling files whose name does not start with test_
//     (helper modules such as _check.py, data files) to the same absolute path inside
//     MicroPython's filesystem (so tracebacks name the real file), puts that directory first on
//     sys.path, chdirs there, imports the module and calls every top-level test_* function in
//     definition order (found by scanning the source; any other test_* attribute follows,
//     sorted). A test passes when it returns without raising; the traceback of a failure is
//     printed with sys.print_exception;
//   * `async def test_*` functions are run as an asyncio Task and awaited (see below);
//   * prints `PASS file::name` / `FAIL file::name` per test and a last line
//     `N passed, N failed`; with --json prints ONE JSON line instead:
//       {"passed": N, "failed": N, "tests": [{"file", "name", "ok", "output"}...]}
//     where output is everything the test printed (traceback included);
//   * exit code 1 if any test failed (or a module failed to import), 2 on usage errors.
//   --exec runs the snippet (top-level `await` allowed), prints its output and exits 1 if it
//   raised. Benchmarks use it to read gc.mem_alloc().
//
// Facts and limits of this port (MicroPython 1.27.0, found by trying):
//   * 32-bit VM (wasm32): object and GC block sizes are those of an ESP32 (16-byte blocks;
//     bytearray(100) costs 144 bytes). gc.mem_alloc(), gc.mem_free(), gc.collect(),
//     gc.disable(), micropython.heap_lock()/heap_unlock() all exist and work: under
//     heap_lock any allocation raises MemoryError.
//   * --heap sets the INITIAL GC heap only: the heap grows on demand (up to about 128 MiB), so a
//     small --heap does not simulate a small device. Measure with gc.mem_alloc() deltas or
//     heap_lock instead. gc.mem_free() reports the huge growable total.
//   * No socket, ssl/tls, network, machine, cryptolib modules: nothing that does I/O can run
//     here. struct, micropython.const, asyncio, select, time (ticks_ms & co), json, hashlib,
//     binascii, errno, io, collections, re, random, deflate, array, uctypes, os, sys are there.
//   * asyncio works (create_task, Event, wait_for, sleep/sleep_ms, gather of coroutines) but is
//     driven by the JavaScript event loop: there is NO asyncio.run() and nothing may block.
//     Write async tests as `async def test_*()`: this runner awaits them, and host_tests/
//     conftest.py runs them with asyncio.run() under pytest. A bare top-level `await coro()`
//     is not a real Task in this port (asyncio.wait_for inside it fails with
//     "TopLevelCoro has no attribute throw"), hence the create_task() wrapper below.
//   * asyncio.sleep_ms() returns a singleton, not a coroutine (true on every MicroPython
//     port): gather(asyncio.sleep_ms(1)) raises "coroutine expected".
//   * A synchronous infinite loop cannot be interrupted from JavaScript; the caller's
//     process timeout is the only guard. An async test that has not finished after
//     --timeout seconds (default 60) is reported as failed, and the run goes on.
//   * stdout is captured through loadMicroPython's `stdout` callback (linebuffer off, one
//     byte per call); stderr likewise.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

// A closed pipe (`| head`) ends the run quietly.
process.stdout.on("error", (e) => process.exit(e.code === "EPIPE" ? 0 : 2));

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "..");
const LIB = path.join(ROOT, "lib");

function usage(msg) {
  if (msg) process.stderr.write(`mp_run: ${msg}\n`);
  process.stderr.write(
    "usage: node tools/mp_run.mjs [--heap N] [--pystack N] [--timeout S] [--json] file.py ...\n" +
      "       node tools/mp_run.mjs [--heap N] --exec CODE\n",
  );
  process.exit(2);
}

function parseSize(s) {
  const m = /^(\d+)([kKmM]?)$/.exec(s || "");
  if (!m) usage(`bad size ${s}`);
  return parseInt(m[1], 10) * ({ k: 1024, m: 1048576 }[m[2].toLowerCase()] || 1);
}

const opts = { heap: 1024 * 1024, pystack: 8 * 1024, timeout: 60, json: false, exec: null };
const files = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--heap") opts.heap = parseSize(argv[++i]);
  else if (a === "--pystack") opts.pystack = parseSize(argv[++i]);
  else if (a === "--timeout") opts.timeout = parseFloat(argv[++i]);
  else if (a === "--json") opts.json = true;
  else if (a === "--exec") {
    opts.exec = argv[++i];
    if (opts.exec === undefined) usage("--exec needs code");
  } else if (a === "-h" || a === "--help") usage();
  else if (a.startsWith("--")) usage(`unknown option ${a}`);
  else files.push(a);
}
if (opts.exec === null && files.length === 0) usage("no test files");

let loadMicroPython;
try {
  ({ loadMicroPython } = await import("@micropython/micropython-webassembly-pyscript"));
} catch (e) {
  process.stderr.write(`mp_run: cannot load MicroPython (run \`make setup\`): ${e.message}\n`);
  process.exit(2);
}

// Output sink: bytes from MicroPython's stdout/stderr. In streaming mode they go straight to
// our stdout; while a test runs in --json mode they are kept for that test's record.
const decoder = new TextDecoder();
let pending = [];
let capture = null; // array of strings while capturing
function flush() {
  if (pending.length === 0) return;
  const text = decoder.decode(new Uint8Array(pending));
  pending = [];
  if (capture) capture.push(text);
  else process.stdout.write(text);
}
const sink = (data) => {
  for (const b of data) pending.push(b);
  if (pending.length >= 4096) flush();
};

const mp = await loadMicroPython({
  heapsize: opts.heap,
  pystack: opts.pystack,
  linebuffer: false,
  stdout: sink,
  stderr: sink,
});

function copyTree(src, dst) {
  mkdirs(dst);
  for (const ent of fs.readdirSync(src, { withFileTypes: true })) {
    if (ent.name === "__pycache__" || ent.name.endsWith(".pyc")) continue;
    const s = path.join(src, ent.name);
    const d = `${dst}/${ent.name}`;
    if (ent.isDirectory()) copyTree(s, d);
    else if (ent.isFile()) mp.FS.writeFile(d, fs.readFileSync(s));
  }
}

function mkdirs(p) {
  let cur = "";
  for (const part of p.split("/").filter(Boolean)) {
    cur += "/" + part;
    try {
      mp.FS.mkdir(cur);
    } catch (e) {
      // EEXIST
    }
  }
}

if (fs.existsSync(LIB)) copyTree(LIB, "/lib");

// Python-side helpers, kept in __main__ under _mprun_* names.
mp.runPython(`
import sys, os
_mprun_coro = None
_mprun_res = 0

def _mprun_import(d, name):
    sys.path.insert(0, d)
    os.chdir(d)
    try:
        __import__(name)
        return 1
    except BaseException as e:
        sys.print_exception(e)
        return 0

def _mprun_names(name):
    return [k for k in dir(sys.modules[name]) if k.startswith("test_")]

def _mprun_call(modname, name):
    global _mprun_coro
    f = getattr(sys.modules[modname], name)
    if not callable(f):
        return 3
    try:
        r = f()
    except BaseException as e:
        sys.print_exception(e)
        return 0
    if r is not None and hasattr(r, "send"):
        _mprun_coro = r
        return 2
    return 1

def _mprun_unload(d):
    for k in list(sys.modules):
        f = getattr(sys.modules[k], "__file__", "")
        if f.startswith(d + "/"):
            del sys.modules[k]
    if d in sys.path:
        sys.path.remove(d)
    os.chdir("/")
`);
const py = (name) => mp.globals.get(name);

const AWAIT_CORO = `
import asyncio
try:
    await asyncio.create_task(_mprun_coro)
    _mprun_res = 1
except BaseException as e:
    sys.print_exception(e)
    _mprun_res = 0
_mprun_coro = None
`;

function withTimeout(promise, seconds) {
  let timer;
  const t = new Promise((resolve) => {
    timer = setTimeout(() => resolve("timeout"), seconds * 1000);
  });
  return Promise.race([promise.then(() => "done"), t]).finally(() => clearTimeout(timer));
}

if (opts.exec !== null) {
  let code = 0;
  try {
    await mp.runPythonAsync(opts.exec);
  } catch (e) {
    flush();
    process.stdout.write(e.name === "PythonError" ? e.message : `${e.stack}\n`);
    code = 1;
  }
  flush();
  process.exit(code);
}

// Top-level test functions in definition order, found in the source text.
function testNamesInOrder(src) {
  const names = [];
  const re = /^(?:async[ \t]+)?def[ \t]+(test_\w*)[ \t]*\(/gm;
  for (let m; (m = re.exec(src)); ) if (!names.includes(m[1])) names.push(m[1]);
  return names;
}

const results = [];
function record(file, name, ok, output) {
  results.push({ file, name, ok, output });
  if (!opts.json) process.stdout.write(`${ok ? "PASS" : "FAIL"} ${file}::${name}\n`);
}

// Runs fn() with MicroPython's output captured (json mode) or streamed; returns [value, text].
async function captured(fn) {
  flush();
  if (opts.json) capture = [];
  let value;
  try {
    value = await fn();
  } finally {
    flush();
  }
  const text = capture ? capture.join("") : "";
  capture = null;
  return [value, text];
}

for (let i = 0; i < files.length; i++) {
  const file = files[i];
  const label = path.basename(file);
  let src;
  try {
    src = fs.readFileSync(file, "utf8");
  } catch (e) {
    record(label, "<read>", false, `${e.message}\n`);
    continue;
  }
  const dir = path.dirname(path.resolve(file));
  const modname = path.basename(file).replace(/\.py$/, "");
  // The same absolute path as on the host, so tracebacks name the real file.
  const mpdir = dir;
  mkdirs(mpdir);
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    if (ent.isFile() && !ent.name.startsWith("test_") && !ent.name.endsWith(".pyc"))
      mp.FS.writeFile(`${mpdir}/${ent.name}`, fs.readFileSync(path.join(dir, ent.name)));
  }
  mp.FS.writeFile(`${mpdir}/${modname}.py`, src);

  const [imported, importOut] = await captured(() => py("_mprun_import")(mpdir, modname));
  if (!imported) {
    record(label, "<import>", false, importOut);
    py("_mprun_unload")(mpdir);
    continue;
  }
  const names = testNamesInOrder(src);
  const present = new Set(py("_mprun_names")(modname));
  const order = names.filter((n) => present.has(n));
  for (const n of [...present].sort()) if (!order.includes(n)) order.push(n);

  for (const name of order) {
    const [ok, out] = await captured(async () => {
      const r = py("_mprun_call")(modname, name);
      if (r === 3) return undefined; // a test_* attribute that is not a function
      if (r === 2) {
        const how = await withTimeout(mp.runPythonAsync(AWAIT_CORO), opts.timeout);
        if (how === "timeout") {
          pending.push(...new TextEncoder().encode(`timed out after ${opts.timeout} s\n`));
          return false;
        }
        return py("_mprun_res") === 1;
      }
      return r === 1;
    });
    if (ok === undefined) continue;
    record(label, name, ok, out);
  }
  py("_mprun_unload")(mpdir);
}

const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed;
if (opts.json) process.stdout.write(JSON.stringify({ passed, failed, tests: results }) + "\n");
else process.stdout.write(`${passed} passed, ${failed} failed\n`);
process.exit(failed ? 1 : 0);
