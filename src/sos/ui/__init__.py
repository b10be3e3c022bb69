"""The SOS web UI: a console for services, revisions, traffic, rollback, metrics and logs.

Plain HTML, CSS and JavaScript modules shipped in this package (``static/``), served by
``sos server`` itself at ``/ui/`` on the API port; no build step and no Node.js at run
time. The pages talk to the same ``/api/v1`` as the client and the CLI, with the token the
user signs in with. See ``docs/sos/ui.md``.
"""

from sos.ui.assets import Asset, Assets, load_assets
from sos.ui.routes import router

__all__ = ["Asset", "Assets", "load_assets", "router"]
