"""``python -m shardpay``: the same as the ``shardpay`` command."""

from .cli import main

raise SystemExit(main())
