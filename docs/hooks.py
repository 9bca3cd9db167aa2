"""Build hooks.

- The API reference reads the source as installed: ``neurosim/`` with the folders ``plugins/`` and
  ``models/`` as ``neurosim.plugins`` and ``neurosim.models``. Before the build, ``build/docs-source/``
  is laid out that way with symbolic links (mkdocstrings reads it, see ``mkdocs.yml``).
- Docstrings are written with reST roles (``:class:`~neurosim.network.Network```), which the API pages
  show as code: the short name after ``~``, the full path otherwise; ``text::`` before a literal
  block loses its second colon.
"""
import re
import shutil
from pathlib import Path

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[1]
VIEW = ROOT / "build" / "docs-source" / "neurosim"
MAPPED = {"plugins": "plugins", "models": "models"}
ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc|math):<code>(~?)([^<]*)</code>")


@event_priority(100)  # before mkdocstrings reads the source
def on_config(config, **kwargs):
    if VIEW.parent.exists():
        shutil.rmtree(VIEW.parent)
    VIEW.mkdir(parents=True)
    for entry in (ROOT / "neurosim").iterdir():
        if entry.name != "__pycache__":
            (VIEW / entry.name).symlink_to(entry)
    for name, folder in MAPPED.items():
        (VIEW / name).symlink_to(ROOT / folder)
    return config


def _name(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **kwargs) -> str:
    return re.sub(r"::</p>", ":</p>", ROLE.sub(_name, html))
