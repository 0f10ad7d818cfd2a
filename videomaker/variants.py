"""The IP-Adapter baseline variants, free of heavy imports so that configs can name them cheaply."""

from typing import Literal, get_args

IPAdapterVariant = Literal["ip-adapter", "ip-adapter-plus", "ip-adapter-faceid"]
IP_ADAPTER_VARIANTS: tuple[str, ...] = get_args(IPAdapterVariant)
