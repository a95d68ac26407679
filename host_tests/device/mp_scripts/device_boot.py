# What a MicroPython board does at reset, on the unix port: run boot.py, then main.py, from
# the working directory (the device's filesystem), each as __main__, unchanged.

for name in ("boot.py", "main.py"):
    try:
        with open(name) as f:
            source = f.read()
    except OSError:
        continue
    exec(compile(source, name, "exec"), {"__name__": "__main__", "__file__": name})
