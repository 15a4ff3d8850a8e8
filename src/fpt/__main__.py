from fpt.cli import main

raise SystemExit(main())
