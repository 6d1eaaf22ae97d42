from etcdbench.cli import main

raise SystemExit(main())
