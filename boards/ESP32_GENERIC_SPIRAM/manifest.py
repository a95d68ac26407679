# Frozen modules of the ESP32_GENERIC_SPIRAM firmware: the ESP32 port's default manifest
# (asyncio, mip, network helpers, ...) and mqtt_v5.
# Build: `make firmware BOARD=ESP32_GENERIC_SPIRAM`
# (board.json names the MicroPython board and variant).
# FROZEN_MANIFEST replaces the board's own manifest, so the port's comes first.

include("$(PORT_DIR)/boards/manifest.py")
include("../mqtt_v5_manifest.py")
