"""Types of ``mqtt_v5``'s public names for type checkers, which the lazy ``__getattr__``
of ``__init__.py`` hides from them. A stub of its own rather than an ``if TYPE_CHECKING:``
block there: MicroPython compiles such a block (its imports never run, but from .mpy its
code and names were 0.2 KB of heap at ``import mqtt_v5``)."""

from typing import Any

from .client import Connected as Connected
from .client import ConnectionEvent as ConnectionEvent
from .client import ConnectOptions as ConnectOptions
from .client import Delivery as Delivery
from .client import Disconnected as Disconnected
from .client import Message as Message
from .client import MqttClient as MqttClient
from .client import PublishOptions as PublishOptions
from .client import ReconnectConfig as ReconnectConfig
from .client import Reconnecting as Reconnecting
from .client import Will as Will
from .client import set_debug as set_debug
from .errors import ConnectRefused as ConnectRefused
from .errors import MqttError as MqttError
from .errors import MqttTimeout as MqttTimeout
from .errors import NetworkError as NetworkError
from .errors import ProtocolError as ProtocolError
from .errors import PublishFailed as PublishFailed
from .errors import QueueFull as QueueFull
from .errors import SubscribeFailed as SubscribeFailed
from .errors import UsageError as UsageError
from .sync_client import SyncClient as SyncClient
from .tls import TlsConfig as TlsConfig

__version__: str


def __getattr__(name: str) -> Any: ...  # the submodules, by name
