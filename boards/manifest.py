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

include("$(PORT_DIR)/boards/manifest.py")

metadata(description="MQTT v5 client with AWS IoT Core support", version="0.1.0")

package("mqtt_v5", base_path="../lib")
