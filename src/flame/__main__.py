from flame.cli import main

raise SystemExit(main())
