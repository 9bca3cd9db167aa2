"""``python -m neurosim``: the ``neurosim`` command."""
from .cli import main

raise SystemExit(main())
