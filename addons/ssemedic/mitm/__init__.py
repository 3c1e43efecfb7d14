"""The mitmproxy layer: the addon's hooks and options, the live log and the
content view. Only glue: the work is done by ``ssemedic.core``."""
