"""``python -m mosaic_gym.cli``: the same as the ``mosaic-gym`` command."""

from mosaic_gym.cli.main import main

raise SystemExit(main())
