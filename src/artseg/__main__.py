from artseg.cli import main

raise SystemExit(main())
