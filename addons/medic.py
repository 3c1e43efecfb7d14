"""Entry script: ``mitmdump -s addons/medic.py``.

mitmproxy puts this script's folder on sys.path, so the ssemedic package next
to it is found from a plain checkout as well as from an installed copy.
"""

from ssemedic.mitm.addon import Medic

addons = [Medic()]
