from phi3tui.cli import main

raise SystemExit(main())
