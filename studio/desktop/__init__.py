"""``imagestudio desktop``: the studio in its own window while the same process keeps serving the API.

``app`` runs the server (as ``serve`` does) and starts the window as a child process (``window``: pywebview on
Qt, the way NiceGUI's native mode opens one), so closing or losing the window never stops the API; ``instance``
keeps it to one per data dir; ``install`` puts the app in the Linux applications menu.
"""
