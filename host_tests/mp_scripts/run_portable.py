# Runs one host_tests/portable test file on MicroPython's unix port and prints a JSON report
# as its last line: {"tests": [{"name", "ok", "output"}], "passed": n, "failed": n}.
# Usage: micropython run_portable.py path/to/test_x.py   (its folder goes first on sys.path)
import asyncio
import io
import json
import sys


def main(path):
    folder, _, name = path.rpartition("/")
    sys.path.insert(0, folder or ".")
    module = __import__(name[:-3])
    tests = []
    for attr in sorted(dir(module)):
        if not attr.startswith("test_"):
            continue
        fn = getattr(module, attr)
        if not callable(fn):
            continue
        out = io.StringIO()
        try:
            result = fn()
            if result is not None and hasattr(result, "send"):  # async def test
                asyncio.run(result)
            tests.append({"name": attr, "ok": True, "output": ""})
        except BaseException as e:
            sys.print_exception(e, out)
            tests.append({"name": attr, "ok": False, "output": out.getvalue()})
    passed = sum(1 for t in tests if t["ok"])
    print(json.dumps({"tests": tests, "passed": passed, "failed": len(tests) - passed}))


main(sys.argv[1])
