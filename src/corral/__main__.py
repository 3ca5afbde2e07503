"""``python -m corral`` runs the CLI."""

from corral.cli.main import main

raise SystemExit(main())
