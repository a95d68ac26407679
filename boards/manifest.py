# MicroPython freeze manifest for mqtt_v5: compiles the package into the firmware image, so
# its bytecode runs from flash and costs no RAM for the code itself.
#
# Build ESP32 firmware with it (ESP-IDF installed and exported, MicroPython source checked out):
#
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC submodules
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/this/repo/boards/manifest.py
#   make BOARD=ESP32_GENERIC deploy PORT=/dev/ttyUSB0
#
# FROZEN_MANIFEST replaces the board's own manifest, so this one includes the port's default
# manifest first: the firmware keeps asyncio, mip and the rest.
#
# Without building firmware, install the .py files with mip instead:
#   mpremote mip install lib/package.json      (or: mpremote cp -r lib/mqtt_v5 :lib/)

import os

include("$(PORT_DIR)/boards/manifest.py")

metadata(description="MQTT v5 client with AWS IoT Core support", version="0.1.0")

# Every module but the CPython-only ones (tools/gen_package_json.py's CPYTHON_ONLY, kept out
# of lib/package.json too): a device never imports them. The manifest runs with this file's
# directory as the working directory.
_CPYTHON_ONLY = ("_cpython_stream.py",)
_files = []
for _dir, _subdirs, _names in os.walk("../lib/mqtt_v5"):
    _subdirs[:] = [d for d in _subdirs if d != "__pycache__"]
    _rel = os.path.relpath(_dir, "../lib/mqtt_v5")
    for _name in _names:
        if _name.endswith(".py") and not (_rel == "." and _name in _CPYTHON_ONLY):
            _files.append(_name if _rel == "." else _rel + "/" + _name)
package("mqtt_v5", files=sorted(_files), base_path="../lib")
